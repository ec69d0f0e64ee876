"""Server CPU of a synthetic 20-step txt2img job next to the model-free job's, run by hand.

One `comfy-cassettes serve --model checkpoints/v1-5-pruned-emaonly.safetensors` subprocess per mode (static,
dynamic) and preview method (none, auto). One client with a /ws connection submits jobs one after another: the
model-free EmptyImage -> SaveImage graph of bench_throughput.py (the baseline, a new `color` each job), then the
seeds' txt2img graph (20 steps, 512x768, batch 2, a new seed each job: no recording has it, so it is sampled).
Each job is followed to its ``executing`` null and its images are fetched from /view, as a client would.

    /work/main/.venv/bin/python bench/bench_txt2img.py [--jobs 20] [--timing instant|recorded]

Figures per job: server CPU ms (from /proc/PID/schedstat), wall ms, /ws frames and bytes received, /view bytes.
The ratio column is CPU against the model-free job in the same server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_throughput import WORKFLOW, Server, running, serve_command  # noqa: E402

CHECKPOINT = "v1-5-pruned-emaonly.safetensors"


def txt2img(seed: int, steps: int = 20) -> dict[str, Any]:
    """ComfyUI's default text-to-image graph at the seeds' values (SaveImage is node "9")."""
    return {
        "3": {"class_type": "KSampler", "inputs": {"seed": seed, "steps": steps, "cfg": 8, "sampler_name": "euler",
                                                   "scheduler": "normal", "denoise": 1, "model": ["4", 0],
                                                   "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 768, "batch_size": 2}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": f"gen_job_{seed}", "images": ["8", 0]}},
    }


def model_free(color: int) -> dict[str, Any]:
    graph = json.loads(json.dumps(WORKFLOW))
    graph["1"]["inputs"]["color"] = color
    return graph


@dataclass
class JobFigures:
    cpu_ms: list[float]
    wall_ms: list[float]
    frames: int
    ws_bytes: int
    view_bytes: int

    def cpu(self) -> float:
        return statistics.median(self.cpu_ms)


async def run_jobs(server: Server, graphs: Sequence[dict[str, Any]]) -> JobFigures:
    """Submit each graph, wait for its end on /ws, fetch its images; CPU and wall time per job."""
    figures = JobFigures([], [], 0, 0, 0)
    async with httpx.AsyncClient(base_url=server.url) as http, \
            connect(server.url.replace("http", "ws") + "/ws?clientId=bench", max_size=None, max_queue=None) as ws:
        await ws.recv()  # the greeting status
        await ws.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
        await ws.recv()
        for graph in graphs:
            cpu, wall = server.cpu_seconds(), time.perf_counter()
            answer = await http.post("/prompt", json={"prompt": graph, "client_id": "bench"})
            answer.raise_for_status()
            prompt_id = answer.json()["prompt_id"]
            while True:
                frame = await ws.recv()
                figures.frames += 1
                figures.ws_bytes += len(frame)
                if isinstance(frame, str) and json.loads(frame) == {"type": "executing", "data": {"node": None, "prompt_id": prompt_id}}:
                    break
            history = (await http.get(f"/history/{prompt_id}")).json()[prompt_id]
            for output in history["outputs"].values():
                for image in output.get("images", []):
                    view = await http.get("/view", params=image)
                    view.raise_for_status()
                    figures.view_bytes += len(view.content)
            figures.cpu_ms.append((server.cpu_seconds() - cpu) * 1000)
            figures.wall_ms.append((time.perf_counter() - wall) * 1000)
    return figures


def measure(jobs: int, options: Sequence[str]) -> tuple[JobFigures, JobFigures]:
    with running("serve", lambda port: serve_command(port, "--model", f"checkpoints/{CHECKPOINT}", *options)) as server:
        asyncio.run(run_jobs(server, [model_free(9000 + i) for i in range(3)]))  # warm-up: imports, first PNG
        asyncio.run(run_jobs(server, [txt2img(9000 + i) for i in range(2)]))
        baseline = asyncio.run(run_jobs(server, [model_free(i + 1) for i in range(jobs)]))
        sampled = asyncio.run(run_jobs(server, [txt2img(i + 1) for i in range(jobs)]))
    return baseline, sampled


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20, help="jobs of each kind per server (default 20)")
    parser.add_argument("--timing", default="instant", choices=("instant", "recorded"))
    args = parser.parse_args(argv)

    print(f"{args.jobs} jobs per row, one client, timing {args.timing}; medians per job")
    print(f"{'server':34} {'job':10} {'CPU ms':>8} {'ratio':>6} {'wall ms':>8} {'frames':>7} {'/ws KiB':>8} {'/view KiB':>9}")
    with tempfile.TemporaryDirectory() as scratch:
        for mode in ("static", "dynamic"):
            for preview in ("none", "auto"):
                options = ["--timing", args.timing, "--preview-method", preview]
                if mode == "dynamic":
                    options += ["--disable-static-return", "--output-dir", str(Path(scratch) / f"out-{preview}")]
                baseline, sampled = measure(args.jobs, options)
                name = f"{mode}, --preview-method {preview}"
                for job, figures in (("model-free", baseline), ("txt2img", sampled)):
                    print(f"{name:34} {job:10} {figures.cpu():8.2f} {figures.cpu() / baseline.cpu():6.2f} "
                          f"{statistics.median(figures.wall_ms):8.1f} {figures.frames / args.jobs:7.0f} "
                          f"{figures.ws_bytes / args.jobs / 1024:8.1f} {figures.view_bytes / args.jobs / 1024:9.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
