# frozen_string_literal: true

# A minitest suite against `comfy-cassettes serve`: submit, poll and download; retries through injected 503s;
# a failed job; a journal assertion. Run: ruby examples/ruby/comfy_client_test.rb
# COMFY_URL: a running server; otherwise one is started with --port 0 --ready-file (COMFY_CASSETTES_CMD: the
# command, default `comfy-cassettes`).
require "minitest/autorun"
require "json"
require "tmpdir"
require_relative "comfy_client"

module Serve
  def self.url
    @url ||= ENV["COMFY_URL"] || start
  end

  def self.start
    dir = Dir.mktmpdir("comfy-ruby-")
    ready = File.join(dir, "ready.json")
    command = (ENV["COMFY_CASSETTES_CMD"] || "comfy-cassettes").split
    pid = Process.spawn(*command, "serve", "--port", "0", "--ready-file", ready, "--output-dir", File.join(dir, "out"),
                        out: File::NULL)
    Minitest.after_run do
      Process.kill("INT", pid)
      Process.wait(pid)
    end
    deadline = Time.now + 20
    until File.exist?(ready)
      raise "serve did not write #{ready} within 20 s" if Time.now > deadline

      sleep 0.02
    end
    JSON.parse(File.read(ready)).fetch("url")
  end
end

class ComfyClientTest < Minitest::Test
  def workflow(color)
    {
      "1" => { "class_type" => "EmptyImage", "inputs" => { "width" => 64, "height" => 64, "batch_size" => 1, "color" => color } },
      "2" => { "class_type" => "SaveImage", "inputs" => { "images" => ["1", 0], "filename_prefix" => "rb/example" } },
    }
  end

  def setup
    @comfy = ComfyClient.new(Serve.url)
    @comfy.reset
  end

  def test_submit_poll_and_download
    queued = @comfy.submit(workflow(1))
    entry = @comfy.wait_for(queued["prompt_id"])
    assert_equal "success", entry["status"]["status_str"]
    image = entry["outputs"]["2"]["images"].first
    assert_equal({ "filename" => "example_00001_.png", "subfolder" => "rb", "type" => "output" }, image)
    assert_equal "\x89PNG".b, @comfy.download(image)[0, 4]
  end

  def test_retries_through_two_injected_503s
    @comfy.add_fault({ "kind" => "status", "route" => "/prompt", "status" => 503, "count" => 2 })
    queued = @comfy.submit(workflow(2))
    assert_equal 3, @comfy.attempts
    assert_equal "success", @comfy.wait_for(queued["prompt_id"])["status"]["status_str"]
  end

  def test_a_failed_job_reports_comfyuis_execution_error
    @comfy.add_fault({ "kind" => "execution_error", "node" => "2", "exception_message" => "CUDA out of memory" })
    entry = @comfy.wait_for(@comfy.submit(workflow(3))["prompt_id"])
    assert_equal "error", entry["status"]["status_str"]
    kind, data = entry["status"]["messages"].last
    assert_equal "execution_error", kind
    assert_equal "CUDA out of memory", data["exception_message"]
  end

  def test_journal_assertions
    @comfy.wait_for(@comfy.submit(workflow(4))["prompt_id"])
    status, verdict = @comfy.assert_requested({ "pattern" => { "method" => "POST", "path" => "/prompt" }, "count" => 1 })
    assert_equal [200, true], [status, verdict["ok"]]
    status, verdict = @comfy.assert_requested({ "method" => "GET", "path" => "/view", "min" => 1 })
    assert_equal 409, status
    assert_includes verdict["message"], "expected at least 1"
    error = assert_raises(ComfyClient::HttpError) { @comfy.admin(:post, "/clock/wait", { "timeout_s" => 0.2 }) }
    assert_equal 400, error.status
    assert_equal %w[prompt_id at timeout], error.body["accepted"]
  end
end
