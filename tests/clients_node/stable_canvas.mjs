// @stable-canvas/comfyui-client, as its README shows: Client.enqueue over /ws, or enqueue_polling over HTTP.
// argv: server URL, workflow JSON file, "ws" | "poll". Prints {"sizes": [[w, h], ...]}.
import { Client } from "@stable-canvas/comfyui-client";
import WebSocket from "ws";
import fs from "fs";
import { deadline, sizes } from "./png.mjs";

const [url, workflowFile, mode] = process.argv.slice(2);
const timer = deadline(30000);
const client = new Client({ api_host: new URL(url).host, WebSocket, fetch });
if (mode === "ws") client.connect();
const workflow = JSON.parse(fs.readFileSync(workflowFile, "utf8"));
const out = mode === "ws" ? await client.enqueue(workflow, {}) : await client.enqueue_polling(workflow, {});
const buffers = [];
for (const image of out.images) {
  buffers.push(image.type === "url" ? Buffer.from(await (await fetch(image.data)).arrayBuffer()) : Buffer.from(image.data));
}
client.close();
clearTimeout(timer);
console.log(JSON.stringify({ sizes: sizes(buffers) }));
