// Starts the replay server the way a harness in any language does: `serve --port 0 --ready-file PATH`, then wait
// for PATH ({"url", "port", "pid"}, written atomically once the server listens).
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";

let server: ChildProcess | undefined;

export async function setup(project: TestProject): Promise<void> {
  const given = process.env.COMFY_URL;
  if (given) {
    project.provide("comfyUrl", given);
    return;
  }
  const folder = mkdtempSync(join(tmpdir(), "comfy-ts-"));
  const ready = join(folder, "ready.json");
  // COMFY_CASSETTES_CMD: how to run the CLI (default: `comfy-cassettes` on PATH; `pipx run comfy-cassettes` works too).
  const [command, ...args] = (process.env.COMFY_CASSETTES_CMD ?? "comfy-cassettes").split(" ");
  server = spawn(command, [...args, "serve", "--port", "0", "--ready-file", ready, "--output-dir", join(folder, "out")],
    { stdio: ["ignore", "ignore", "inherit"], cwd: process.env.COMFY_CASSETTES_DIR ?? process.cwd() });
  const deadline = Date.now() + 20_000;
  while (!existsSync(ready)) {
    if (server.exitCode !== null) throw new Error(`serve exited with ${server.exitCode}`);
    if (Date.now() > deadline) throw new Error("serve did not write its ready file within 20 s");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  project.provide("comfyUrl", JSON.parse(readFileSync(ready, "utf8")).url);
}

export async function teardown(): Promise<void> {
  server?.kill("SIGINT");
}

declare module "vitest" {
  export interface ProvidedContext {
    comfyUrl: string;
  }
}
