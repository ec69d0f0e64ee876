import { defineConfig } from "vitest/config";

// globalSetup starts `comfy-cassettes serve` once and hands its URL to the tests. Node 20 has WebSocket behind
// a flag (built in from Node 22): the test workers get the flag only where it is needed.
export default defineConfig({
  test: {
    globalSetup: ["./test/serve.ts"],
    testTimeout: 20_000,
    hookTimeout: 30_000,
    fileParallelism: false,
    pool: "forks",
    poolOptions: { forks: { execArgv: typeof WebSocket === "undefined" ? ["--experimental-websocket"] : [] } },
  },
});
