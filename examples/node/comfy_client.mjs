// A ComfyUI client the way a TypeScript/JavaScript front end writes one, run against `comfy-cassettes serve`.
// No dependencies: Node 20's fetch and WebSocket (node --experimental-websocket; built in from Node 22).
// Usage: node --experimental-websocket comfy_client.mjs http://127.0.0.1:8189
// Prints one JSON line describing what the client saw; exits 1 on any surprise.

const base = process.argv[2] ?? "http://127.0.0.1:8189";
const admin = `${base}/__cassettes__`;
const clientId = "node-" + Math.random().toString(16).slice(2);

const workflow = {
  "1": { class_type: "EmptyImage", inputs: { width: 64, height: 64, batch_size: 1, color: 255 } },
  "2": { class_type: "SaveImage", inputs: { images: ["1", 0], filename_prefix: "gen/from_node" } },
};

async function json(response) {
  if (!response.ok) throw new Error(`${response.url}: HTTP ${response.status}`);
  return response.json();
}

// Retries on 503 like a production client would (the admin API injects two of them below).
async function submit(prompt) {
  for (let attempt = 1; ; attempt++) {
    const response = await fetch(`${base}/prompt`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ prompt, client_id: clientId }),
    });
    if (response.status === 503 && attempt < 5) continue;
    return { attempts: attempt, ...(await json(response)) };
  }
}

function follow(promptId, socket) {
  // Resolves with the event types seen for this prompt, at `executing` with node null (the end marker).
  return new Promise((resolve, reject) => {
    const seen = [];
    const timer = setTimeout(() => reject(new Error("no executing/null within 10 s")), 10000);
    socket.addEventListener("message", (event) => {
      if (typeof event.data !== "string") return; // binary previews
      const message = JSON.parse(event.data);
      if (message.data?.prompt_id !== promptId) return;
      seen.push(message.type);
      if (message.type === "executing" && message.data.node === null) {
        clearTimeout(timer);
        resolve(seen);
      }
    });
  });
}

const socket = new WebSocket(`${base.replace("http", "ws")}/ws?clientId=${clientId}`);
await new Promise((resolve, reject) => {
  socket.addEventListener("open", resolve, { once: true });
  socket.addEventListener("error", reject, { once: true });
});

await fetch(`${admin}/faults`, {
  method: "POST",
  headers: { "Content-Type": "application/json" },
  body: JSON.stringify({ kind: "status", route: "/prompt", status: 503, count: 2 }),
});

const { prompt_id: promptId, attempts } = await submit(workflow);
const events = await follow(promptId, socket);
const history = (await json(await fetch(`${base}/history/${promptId}`)))[promptId];
const image = history.outputs["2"].images[0];
const view = await fetch(`${base}/view?${new URLSearchParams(image)}`);
const png = new Uint8Array(await view.arrayBuffer());
const journal = await json(
  await fetch(`${admin}/journal/count`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ method: "POST", path: "/prompt" }),
  }),
);
socket.close();

const result = {
  attempts,
  events,
  status: history.status.status_str,
  image,
  view: { status: view.status, type: view.headers.get("content-type"), png: png[1] === 0x50 && png[2] === 0x4e },
  prompts_received: journal.count,
};
console.log(JSON.stringify(result));
process.exit(result.status === "success" && result.view.png ? 0 : 1);
