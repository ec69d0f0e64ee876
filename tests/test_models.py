"""Model workflows on real sockets: declared models, sampler steps and previews from the submitted values,
images per seed, interrupts at a step, and the default cassette's recorded txt2img."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import struct
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from PIL import Image
from websockets.sync.client import connect

from comfy_cassettes.comfy.timeline import PREVIEW
from comfy_cassettes.control import ReplayControl
from comfy_cassettes.errors import ConfigError
from comfy_cassettes.replay.config import ReplayConfig
from comfy_cassettes.replay.server import ReplayServer, build_engine
from comfy_cassettes.replay.sim.state import QueueItem
from helpers import bundled

CHECKPOINT = "v1-5-pruned-emaonly.safetensors"
RECORDED_CHECKPOINT = "random-sd15.safetensors"  # what the txt2img capture's server had


def txt2img(*, steps: int = 20, width: int = 512, height: int = 768, batch: int = 2, seed: int = 123,
            checkpoint: str = CHECKPOINT, prefix: str = "gen_job_123") -> dict[str, Any]:
    """ComfyUI's default text-to-image graph (SaveImage is node "9", as in the seeds), API format."""
    return {
        "3": {"class_type": "KSampler", "inputs": {"seed": seed, "steps": steps, "cfg": 8, "sampler_name": "euler",
                                                   "scheduler": "normal", "denoise": 1, "model": ["4", 0],
                                                   "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": width, "height": height, "batch_size": batch}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": prefix, "images": ["8", 0]}},
    }


def recorded_txt2img(steps: int = 3) -> dict[str, Any]:
    """The graph of the txt2img capture (its first prompt), with ``steps``."""
    graph = txt2img(steps=steps, width=64, height=64, batch=1, seed=42, checkpoint=RECORDED_CHECKPOINT, prefix="txt2img")
    graph["3"]["inputs"].update(cfg=7, denoise=1)
    return graph


def run(server: ReplayServer, workflow: dict[str, Any], *, metadata: bool = True,
        during: Callable[[str], None] | None = None) -> tuple[str, list[Any]]:
    """Submit over HTTP and collect the client's /ws messages (text parsed, binary kept) to ``executing`` null."""
    with connect(server.url.replace("http", "ws") + "/ws?clientId=me", max_queue=None) as ws:
        ws.recv(timeout=5)  # the greeting status
        if metadata:
            ws.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
            assert json.loads(ws.recv(timeout=5))["type"] == "feature_flags"
        answer = httpx.post(server.url + "/prompt", json={"prompt": workflow, "client_id": "me"})
        assert answer.status_code == 200, answer.text
        prompt_id = answer.json()["prompt_id"]
        if during is not None:
            during(prompt_id)
        messages: list[Any] = []
        while True:
            frame = ws.recv(timeout=10)
            messages.append(frame if isinstance(frame, bytes) else json.loads(frame))
            if messages[-1] == {"type": "executing", "data": {"node": None, "prompt_id": prompt_id}}:
                return prompt_id, messages


def kinds(messages: list[Any]) -> list[str]:
    return ["binary" if isinstance(m, bytes) else m["type"] for m in messages]


def progress(messages: list[Any]) -> list[tuple[int, int]]:
    return [(m["data"]["value"], m["data"]["max"]) for m in messages if isinstance(m, dict) and m["type"] == "progress"]


@pytest.fixture
def declared(start_server: Callable[..., ReplayServer]) -> ReplayServer:
    # Zero latency: these tests hold, interrupt and count what txt2img sends, not how long its recorded 8 s take.
    return start_server("comfyui", models=(f"checkpoints/{CHECKPOINT}",), preview_method="auto", dynamic=True, timing="instant")


def test_the_seeds_txt2img_runs_with_a_declared_checkpoint(declared: ReplayServer) -> None:
    prompt_id, messages = run(declared, txt2img())
    assert progress(messages) == [(k, 20) for k in range(1, 21)]
    previews = [m for m in messages if isinstance(m, bytes)]
    assert len(previews) == 20
    event_type, length = struct.unpack(">II", previews[0][:8])
    metadata = json.loads(previews[0][8 : 8 + length])
    assert event_type == 4 and metadata == {"node_id": "3", "prompt_id": prompt_id, "display_node_id": "3",
                                            "parent_node_id": None, "real_node_id": "3", "image_type": "image/jpeg"}
    with Image.open(io.BytesIO(previews[0][8 + length:])) as preview:
        assert preview.format == "JPEG" and preview.size == (341, 512)  # 64x96 latent scaled to fit 512, like ComfyUI
    # The captured order per step: progress_state, the preview, then progress (txt2img capture).
    sampler = kinds(messages)[kinds(messages).index("executing", kinds(messages).index("progress_state", 10)):]
    assert ["progress_state", "binary", "progress"] * 2 == sampler[sampler.index("binary") - 1:][:6]
    executed = next(m for m in messages if isinstance(m, dict) and m["type"] == "executed")["data"]["output"]["images"]
    assert [i["filename"] for i in executed] == ["gen_job_123_00001_.png", "gen_job_123_00002_.png"]
    for image in executed:
        with Image.open(declared.engine.roots.output / image["filename"]) as saved:
            assert saved.size == (512, 768)
            assert json.loads(saved.text["prompt"])["4"]["inputs"]["ckpt_name"] == CHECKPOINT
    assert httpx.get(declared.url + "/models/checkpoints").json() == [RECORDED_CHECKPOINT, CHECKPOINT]  # sorted, like ComfyUI
    info = httpx.get(declared.url + "/object_info/CheckpointLoaderSimple").json()
    assert info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] == [RECORDED_CHECKPOINT, CHECKPOINT]


def test_a_legacy_client_gets_each_preview_after_its_progress(declared: ReplayServer) -> None:
    _, messages = run(declared, txt2img(steps=3, width=64, height=64, batch=1), metadata=False)
    steps = kinds(messages)[kinds(messages).index("progress") - 1:][:9]
    assert steps == ["progress_state", "progress", "binary"] * 3
    frame = next(m for m in messages if isinstance(m, bytes))
    assert struct.unpack(">II", frame[:8]) == (1, 1)  # legacy preview, JPEG


def test_no_preview_method_sends_progress_without_previews(start_server: Callable[..., ReplayServer]) -> None:
    server = start_server("comfyui", models=(f"checkpoints/{CHECKPOINT}",))
    _, messages = run(server, txt2img(steps=4, width=64, height=64, batch=1))
    assert progress(messages) == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert not any(isinstance(m, bytes) for m in messages)


def test_an_undeclared_checkpoint_gets_comfyuis_400(declared: ReplayServer) -> None:
    answer = httpx.post(declared.url + "/prompt", json={"prompt": txt2img(checkpoint="nope.safetensors")})
    assert answer.status_code == 400
    listed = [RECORDED_CHECKPOINT, CHECKPOINT]
    assert answer.json() == {
        "error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": "", "extra_info": {}},
        "node_errors": {"4": {"errors": [{
            "type": "value_not_in_list", "message": "Value not in list",
            "details": f"ckpt_name: 'nope.safetensors' not in {listed!r}",
            "extra_info": {"input_name": "ckpt_name", "input_config": [listed, {"tooltip": "The name of the checkpoint (model) to load."}],
                           "received_value": "nope.safetensors"}}], "dependent_outputs": ["9"], "class_type": "CheckpointLoaderSimple"}},
    }


def test_without_a_declaration_the_default_cassette_rejects_the_checkpoint(start_server: Callable[..., ReplayServer]) -> None:
    server = start_server("comfyui")
    answer = httpx.post(server.url + "/prompt", json={"prompt": txt2img()})
    assert answer.status_code == 400 and answer.json()["node_errors"]["4"]["errors"][0]["type"] == "value_not_in_list"
    assert httpx.get(server.url + "/models/checkpoints").json() == [RECORDED_CHECKPOINT]


def test_the_recorded_txt2img_replays_as_recorded_and_a_5_step_variant_gets_5_steps(start_server: Callable[..., ReplayServer]) -> None:
    server = start_server("comfyui")
    _, recorded = run(server, recorded_txt2img(3))
    assert progress(recorded) == [(1, 3), (2, 3), (3, 3)]
    assert len([m for m in recorded if isinstance(m, bytes)]) == 3  # recorded previews replay as recorded
    _, five = run(server, recorded_txt2img(5))
    assert progress(five) == [(k, 5) for k in range(1, 6)]
    # Loader, encodes and latent are unchanged: served from the cache, as ComfyUI would (txt2img's batch variant).
    assert next(m["data"]["nodes"] for m in five if isinstance(m, dict) and m["type"] == "execution_cached") == ["4", "5", "6", "7"]
    assert [m["data"]["node"] for m in five if isinstance(m, dict) and m["type"] == "executing"] == ["3", "8", "9", None]


def test_an_interrupt_at_step_2_ends_the_sampler_with_nothing_after(declared: ReplayServer) -> None:
    with ReplayControl(declared.url) as control:
        control.hold("step", node="3", step=2)

        def interrupt_at_step_2(prompt_id: str) -> None:
            assert control.wait_held(prompt_id)["at"] == "step:3:2"
            assert httpx.post(declared.url + "/interrupt", json={"prompt_id": prompt_id}).status_code == 200
            control.release()

        prompt_id, messages = run(declared, txt2img(), during=interrupt_at_step_2)
    after = kinds(messages)[[i for i, m in enumerate(messages) if isinstance(m, dict) and m["type"] == "progress"][-1] + 1:]
    assert progress(messages) == [(1, 20), (2, 20)]
    assert after == ["execution_interrupted", "status", "executing"]
    interrupted = next(m["data"] for m in messages if isinstance(m, dict) and m["type"] == "execution_interrupted")
    assert interrupted["node_id"] == "3" and interrupted["node_type"] == "KSampler"
    assert sorted(interrupted["executed"]) == ["4", "5", "6", "7"]
    entry = httpx.get(f"{declared.url}/history/{prompt_id}").json()[prompt_id]
    assert entry["status"]["status_str"] == "error" and entry["outputs"] == {}


def test_images_are_deterministic_per_seed(declared: ReplayServer) -> None:
    def image_of(seed: int, prefix: str) -> bytes:
        run(declared, txt2img(steps=2, width=64, height=96, batch=1, seed=seed, prefix=prefix))
        with Image.open(declared.engine.roots.output / f"{prefix}_00001_.png") as saved:
            return saved.tobytes()

    first, again, other = image_of(1, "a"), image_of(1, "b"), image_of(2, "c")
    assert first == again and first != other


def test_steps_follow_the_samplers_rules() -> None:
    from comfy_cassettes.comfy.behaviours import sampler_steps

    graph = txt2img(steps=10)
    graph["3"]["inputs"]["denoise"] = 0
    assert sampler_steps(graph, "3") == 0  # KSampler samples nothing at denoise 0
    graph["3"]["inputs"].update(denoise=0.5, scheduler="ddim_uniform", steps=6)
    assert sampler_steps(graph, "3") == 7  # ddim_uniform spaces 1000 timesteps: 6 steps give 7 (samplers.md)
    graph["3"] = {"class_type": "KSamplerAdvanced", "inputs": {"steps": 10, "start_at_step": 2, "end_at_step": 5, "scheduler": "normal"}}
    assert sampler_steps(graph, "3") == 3
    graph["3"]["inputs"]["end_at_step"] = 10000
    assert sampler_steps(graph, "3") == 8


def test_recorded_timing_paces_other_step_counts_at_the_recorded_step_time(tmp_path: Any) -> None:
    engine = build_engine(ReplayConfig(cassettes=(bundled("txt2img"),), timing="recorded", output_dir=tmp_path / "o",
                                       input_dir=tmp_path / "i", temp_dir=tmp_path / "t"))
    try:
        recorded = engine.jobs[0]
        times = [e.t for e in recorded.ws if e.type == "progress"]
        plan = engine.worker.plan(QueueItem(0, "p", recorded_txt2img(9), {}, ["9"], "me", 1))
        steps = [e.t for e in plan.events if e.type == "progress"]
        assert len(steps) == 9 and plan.job is None
        recorded_step = (times[-1] - next(e.t for e in recorded.ws if e.type == "executing" and e.data["node"] == "3")) / 3
        assert steps[-1] - steps[-2] == pytest.approx(recorded_step, rel=1e-3)
        assert not [e for e in plan.events if e.type == PREVIEW]  # --preview-method none
    finally:
        engine.remove_owned_dirs()


def test_declared_models_reach_every_folder_listing(start_server: Callable[..., ReplayServer]) -> None:
    server = start_server("comfyui", models=("loras/style/ink.safetensors", "embeddings/easy.pt", "vae/kl.safetensors"))
    assert httpx.get(server.url + "/models/loras").json() == ["style/ink.safetensors"]
    assert httpx.get(server.url + "/embeddings").json() == ["easy"]
    info = httpx.get(server.url + "/object_info").json()
    assert info["LoraLoader"]["input"]["required"]["lora_name"][0] == ["style/ink.safetensors"]
    assert info["VAELoader"]["input"]["required"]["vae_name"][0] == ["kl.safetensors", "pixel_space"]
    assert httpx.get(server.url + "/models/unet").status_code == 404  # the routes do not map legacy names
    [entry] = httpx.get(server.url + "/api/experiment/models/loras").json()  # the editor's model library
    assert (entry["name"], entry["pathIndex"], entry["size"]) == ("style/ink.safetensors", 0, 0)
    assert httpx.get(server.url + "/models").json()[:4] == ["checkpoints", "configs", "loras", "vae"]


@pytest.mark.parametrize(("spec", "message"), [
    ("nope/x.safetensors", "unknown model folder 'nope'"),
    ("checkpoints", "expected FOLDER/NAME"),
    ("checkpoints/x.txt", "ComfyUI lists only"),
])
def test_a_bad_model_declaration_is_a_clear_error(spec: str, message: str, tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match=message):
        ReplayConfig(models=(spec,)).validated()


def test_serve_declares_models_on_the_command_line() -> None:
    from typer.testing import CliRunner

    from comfy_cassettes.cli import app

    result = CliRunner().invoke(app, ["serve", "--model", "checkpoints/x.txt", "--port", "0"])
    assert result.exit_code == 1 and "ComfyUI lists only" in result.output


def test_the_marker_declares_models_for_a_test(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\naddopts = -p no:cacheprovider\nfilterwarnings = error\n")
    graph = txt2img(steps=5, width=64, height=64, batch=1)
    pytester.makepyfile(f"""
        import pytest

        @pytest.mark.comfy_cassette(models=["checkpoints/{CHECKPOINT}"])
        def test_txt2img(comfy):
            entry = comfy.run({copy.deepcopy(graph)!r})
            assert entry["status"]["completed"]
            assert entry["outputs"]["9"]["images"][0]["filename"] == "gen_job_123_00001_.png"
    """)
    pytester.runpytest_subprocess().assert_outcomes(passed=1)


@pytest.mark.parametrize("metadata", [False, True], ids=["legacy", "metadata"])
@pytest.mark.parametrize("recorded", [False, True], ids=["synthetic", "recorded"])
def test_a_step_hold_never_splits_a_progress_from_its_preview(declared: ReplayServer, metadata: bool, recorded: bool) -> None:
    """ComfyUI sends a step's progress and its preview back to back (legacy: progress then preview; metadata:
    preview then progress): a client held at step k has k of each, the pair last."""
    workflow, step, steps = (recorded_txt2img(3), 2, 3) if recorded else (txt2img(steps=6, width=64, height=64, batch=1), 4, 6)
    with ReplayControl(declared.url) as control, \
            connect(declared.url.replace("http", "ws") + "/ws?clientId=me", max_queue=None) as ws:
        control.hold("step", node="3", step=step)
        ws.recv(timeout=5)  # the greeting status
        if metadata:
            ws.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
            assert json.loads(ws.recv(timeout=5))["type"] == "feature_flags"
        answer = httpx.post(declared.url + "/prompt", json={"prompt": workflow, "client_id": "me"})
        prompt_id = answer.json()["prompt_id"]
        assert control.wait_held(prompt_id)["at"] == f"step:3:{step}"
        held: list[Any] = []
        with contextlib.suppress(TimeoutError):
            while True:  # everything sent before the hold, until the socket is quiet
                frame = ws.recv(timeout=0.5)
                held.append(frame if isinstance(frame, bytes) else json.loads(frame))
        assert progress(held) == [(k, steps) for k in range(1, step + 1)]
        assert kinds(held).count("binary") == step
        assert kinds(held)[-2:] == (["binary", "progress"] if metadata else ["progress", "binary"])
        control.release()
        rest: list[Any] = []
        while rest[-1:] != [{"type": "executing", "data": {"node": None, "prompt_id": prompt_id}}]:
            frame = ws.recv(timeout=10)
            rest.append(frame if isinstance(frame, bytes) else json.loads(frame))
    assert progress(rest) == [(k, steps) for k in range(step + 1, steps + 1)]
    assert kinds(rest).count("binary") == steps - step
