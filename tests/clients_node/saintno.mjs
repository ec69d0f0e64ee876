// @saintno/comfyui-sdk, as its README's basic usage shows: ComfyApi, PromptBuilder on the API-format workflow with
// the SaveImage node as output, CallWrapper. argv: server URL, workflow JSON file. Prints {"sizes": [[w, h], ...]}.
import { CallWrapper, ComfyApi, PromptBuilder } from "@saintno/comfyui-sdk";
import fs from "fs";
import { deadline, sizes } from "./png.mjs";

const [url, workflowFile] = process.argv.slice(2);
const timer = deadline(30000);
const workflow = JSON.parse(fs.readFileSync(workflowFile, "utf8"));
const save = Object.keys(workflow).find((id) => workflow[id].class_type === "SaveImage");
const api = await new ComfyApi(url).init().waitForReady();
const builder = new PromptBuilder(workflow, [], ["images"]).setOutputNode("images", save);
const result = await new Promise((resolve) => {
  new CallWrapper(api, builder)
    .onFinished((data) => resolve({ data }))
    .onFailed((error) => resolve({ error: String(error?.stack ?? error) }))
    .run();
});
if (result.error) {
  console.log(JSON.stringify(result));
  process.exit(1);
}
const buffers = [];
for (const image of result.data.images.images) buffers.push(Buffer.from(await (await fetch(api.getPathImage(image))).arrayBuffer()));
clearTimeout(timer);
console.log(JSON.stringify({ sizes: sizes(buffers) }));
process.exit(0); // its socket would keep Node running
