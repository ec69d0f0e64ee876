// comfy-ui-client (npm), as its README shows: connect, getImages (it listens for `executing` null only once its
// POST /prompt has answered), disconnect. argv: server URL, workflow JSON file, runs. Prints {"sizes": [...]} per run.
import { ComfyUIClient } from "comfy-ui-client";
import fs from "fs";
import { deadline, sizes } from "./png.mjs";

const [url, workflowFile, runs] = process.argv.slice(2);
const timer = deadline(30000);
const workflow = JSON.parse(fs.readFileSync(workflowFile, "utf8"));
const client = new ComfyUIClient(new URL(url).host, crypto.randomUUID());
await client.connect();
for (let run = 0; run < Number(runs); run++) {
  const images = Object.values(await client.getImages(workflow)).flat();
  const buffers = await Promise.all(images.map(async (image) => Buffer.from(await image.blob.arrayBuffer())));
  console.log(JSON.stringify({ sizes: sizes(buffers) }));
}
await client.disconnect();
clearTimeout(timer);
