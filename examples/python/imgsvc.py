"""A small image service, as a team would write it: it drives ComfyUI over HTTP and /ws (httpx, websockets) and
charges a customer through a payments API; ``render_task`` is the Celery-style task that does both."""

import asyncio
import json
import os
import uuid
from pathlib import Path

import httpx
import websockets


class ComfyError(RuntimeError):
    """ComfyUI refused the prompt or the job failed."""


def render_workflow(customer: str, color: int) -> dict:
    """EmptyImage -> ImageInvert -> SaveImage, saved under the customer's folder."""
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": color}},
        "3": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": f"{customer}/render"}},
    }


async def generate(workflow: dict, base_url: str | None = None, timeout: float = 30.0) -> list[tuple[str, bytes]]:
    """Submit, follow the job on /ws until ComfyUI says it is done, then download every image it saved."""
    base_url = base_url or os.environ["COMFYUI_URL"]
    client_id = uuid.uuid4().hex
    async with websockets.connect(f"{base_url.replace('http', 'ws', 1)}/ws?clientId={client_id}") as ws, \
            httpx.AsyncClient(base_url=base_url) as http:
        answer = await http.post("/prompt", json={"prompt": workflow, "client_id": client_id})
        if answer.status_code != 200:
            raise ComfyError(f"ComfyUI refused the prompt ({answer.status_code}): {answer.text}")
        prompt_id = answer.json()["prompt_id"]
        await asyncio.wait_for(_until_done(ws, prompt_id), timeout)
        entry = (await http.get(f"/history/{prompt_id}")).json()[prompt_id]
        images = [image for output in entry["outputs"].values() for image in output.get("images", [])]
        return [(image["filename"], (await http.get("/view", params=image)).content) for image in images]


async def _until_done(ws, prompt_id: str) -> None:
    """Read /ws until ComfyUI says the job is over: ``executing`` with node null, or ``execution_error``."""
    async for frame in ws:
        if isinstance(frame, bytes):
            continue  # binary previews
        message = json.loads(frame)
        data = message.get("data", {})
        if data.get("prompt_id") != prompt_id:
            continue
        if message["type"] == "execution_error":
            raise ComfyError(data["exception_message"])
        if message["type"] == "executing" and data["node"] is None:
            return


def charge(customer: str, cents: int) -> dict:
    """The payments API (another service, recorded in the tests with pytest-recording)."""
    base = os.environ.get("PAYMENTS_URL", "http://localhost:8765")
    answer = httpx.post(f"{base}/v1/charges", json={"customer": customer, "amount": cents})
    answer.raise_for_status()
    return answer.json()


def render_task(customer: str, color: int, out_dir: Path) -> dict:
    """The worker's task: render, store the images, charge 50 cents per image."""
    images = asyncio.run(generate(render_workflow(customer, color)))
    paths = []
    for name, data in images:
        (path := Path(out_dir) / name).write_bytes(data)
        paths.append(path)
    return {"files": paths, "charge": charge(customer, 50 * len(images))["id"]}
