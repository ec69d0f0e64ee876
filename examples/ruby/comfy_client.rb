# frozen_string_literal: true

# A ComfyUI client the way a Ruby worker (Sidekiq, Rails) writes one: net/http and JSON from the standard
# library, nothing else. The admin helpers talk to comfy-cassettes' /__cassettes__ API.
require "json"
require "net/http"
require "uri"

class ComfyClient
  class HttpError < StandardError
    attr_reader :status, :body

    def initialize(status, body)
      @status = status
      @body = body
      super("HTTP #{status}: #{body}")
    end
  end

  attr_reader :base, :client_id, :attempts

  def initialize(base, token: ENV["COMFY_CASSETTES_ADMIN_TOKEN"])
    @base = URI(base)
    @token = token
    @client_id = "ruby-#{rand(1 << 32).to_s(16)}"
    @attempts = 0
  end

  # POST /prompt, retrying 503s (a busy or restarting ComfyUI) with a short back-off.
  def submit(prompt, retries: 5)
    @attempts = 0
    loop do
      @attempts += 1
      response = request(Net::HTTP::Post, "/prompt", { prompt: prompt, client_id: @client_id })
      if response.code == "503" && @attempts < retries
        sleep(0.01 * @attempts)
        next
      end
      return parse(response)
    end
  end

  def history(prompt_id)
    parse(request(Net::HTTP::Get, "/history/#{URI.encode_www_form_component(prompt_id)}"))
  end

  # Poll /history until the job is there (ComfyUI writes it when the job ends, success or not).
  def wait_for(prompt_id, timeout: 10)
    deadline = Time.now + timeout
    loop do
      entry = history(prompt_id)[prompt_id]
      return entry if entry
      raise "prompt #{prompt_id} did not finish within #{timeout}s" if Time.now > deadline

      sleep 0.02
    end
  end

  # The bytes of an output image (an entry of outputs[node]["images"]).
  def download(image)
    response = request(Net::HTTP::Get, "/view?#{URI.encode_www_form(image)}")
    raise HttpError.new(response.code.to_i, response.body) unless response.code == "200"

    response.body
  end

  # ---- the replay's admin API

  def admin(method, path, body = nil, ok: [200, 201])
    klass = { get: Net::HTTP::Get, post: Net::HTTP::Post, delete: Net::HTTP::Delete }.fetch(method)
    response = request(klass, "/__cassettes__#{path}", body, admin: true)
    parsed = JSON.parse(response.body)
    raise HttpError.new(response.code.to_i, parsed) unless ok.include?(response.code.to_i)

    [response.code.to_i, parsed]
  end

  def reset = admin(:post, "/reset")
  def add_fault(rule) = admin(:post, "/faults", rule)

  # 200 and the verdict when the journal matches, else 409 with what the server received.
  def assert_requested(expectation) = admin(:post, "/journal/assert", expectation, ok: [200, 409])

  private

  def request(klass, path, body = nil, admin: false)
    message = klass.new(path)
    message["Authorization"] = "Bearer #{@token}" if admin && @token
    if body
      message["Content-Type"] = "application/json"
      message.body = JSON.generate(body)
    end
    Net::HTTP.start(@base.host, @base.port, open_timeout: 5, read_timeout: 15) { |http| http.request(message) }
  end

  def parse(response)
    body = response.body.to_s.empty? ? nil : JSON.parse(response.body)
    raise HttpError.new(response.code.to_i, body) unless response.code == "200"

    body
  end
end
