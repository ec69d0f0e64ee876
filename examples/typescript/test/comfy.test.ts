// A TypeScript suite against `comfy-cassettes serve`: progress over /ws, a cancelled job, retries through
// injected 503s, and assertions on the server's request journal. Run: npm run generate && npm test.
import { afterEach, beforeEach, describe, expect, inject, it } from "vitest";
import { Admin, ComfyClient, HttpError, type ApiPrompt, type Progress } from "../src/client";

const base = inject("comfyUrl");
const admin = new Admin(base, process.env.COMFY_CASSETTES_ADMIN_TOKEN);

const workflow = (color: number): ApiPrompt => ({
  "1": { class_type: "EmptyImage", inputs: { width: 64, height: 64, batch_size: 1, color } },
  "2": { class_type: "SaveImage", inputs: { images: ["1", 0], filename_prefix: "ts/example" } },
});

describe("a ComfyUI client", () => {
  let client: ComfyClient;
  let progress: Progress;

  beforeEach(async () => {
    await admin.reset();
    client = new ComfyClient(base);
    progress = await client.connect();
  });
  afterEach(() => progress.close());

  it("follows a job over /ws to its image, retrying two injected 503s", async () => {
    await admin.addFaults({ kind: "status", route: "/prompt", status: 503, count: 2 });
    const { prompt_id } = await client.submit(workflow(1));
    expect(client.attempts).toBe(3);

    const messages = await progress.finished(prompt_id);
    const types = messages.map((m) => m.type);
    expect(types[0]).toBe("execution_start");
    expect(types.slice(-2)).toEqual(["execution_success", "executing"]);

    const entry = (await client.history(prompt_id))[prompt_id];
    expect(entry.status.status_str).toBe("success");
    const [image] = entry.outputs["2"].images ?? [];
    expect(image).toEqual({ filename: "example_00001_.png", subfolder: "ts", type: "output" });
    const png = new Uint8Array(await (await client.view(image)).arrayBuffer());
    expect(Array.from(png.slice(1, 4))).toEqual([0x50, 0x4e, 0x47]); // "PNG"

    const verdict = await admin.assertRequested({ pattern: { method: "POST", path: "/prompt" }, count: 3 });
    expect(verdict.status).toBe(200);
  });

  it("cancels a running job: held at node 1, interrupted, stopped at node 2", async () => {
    await admin.hold({ at: "node:1" });
    const { prompt_id } = await client.submit(workflow(2));
    expect((await admin.waitHeld({ prompt_id, timeout: 5 })).at).toBe("node:1");
    await client.interrupt(prompt_id); // what the frontend's cancel sends
    await admin.advance({ prompt_id });

    const messages = await progress.finished(prompt_id);
    const stopped = messages.find((m) => m.type === "execution_interrupted");
    expect(stopped?.type === "execution_interrupted" && stopped.data.node_id).toBe("2");
    const entry = (await client.history(prompt_id))[prompt_id];
    expect(entry.status.status_str).toBe("error");
  });

  it("surfaces a failed job with ComfyUI's execution_error", async () => {
    await admin.addFaults({ kind: "execution_error", node: "2", exception_message: "CUDA out of memory" });
    const { prompt_id } = await client.submit(workflow(3));
    const messages = await progress.finished(prompt_id);
    const failed = messages.find((m) => m.type === "execution_error");
    expect(failed?.type === "execution_error" && failed.data.exception_message).toBe("CUDA out of memory");
  });

  it("gets a 409 with what was received when the journal does not match", async () => {
    await client.submit(workflow(4));
    const verdict = await admin.assertRequested({ method: "POST", path: "/prompt", count: 2 });
    expect(verdict.status).toBe(409);
    expect(verdict.body.received).toContain("POST /prompt -> 200");
  });

  it("is told which admin key is wrong", async () => {
    const refused = await admin.raw("POST", "/clock/wait", { timeout_s: 0.2 });
    expect(refused.status).toBe(400);
    expect((refused.body as { accepted: string[] }).accepted).toEqual(["prompt_id", "at", "timeout"]);
    await expect(admin.hold({ at: "sometime" })).rejects.toBeInstanceOf(HttpError);
  });
});
