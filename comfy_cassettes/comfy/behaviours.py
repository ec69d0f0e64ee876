"""What each family of ComfyUI nodes does to a run that a client can observe: image sizes and counts, sampler
steps, seeds, and the inputs that decide them.

A family is a set of node classes with one behaviour (sources make images from their own values, resizers and
batchers change what flows through, samplers report one progress step per sigma step, decoders and loaders pass
through). Adding a node family is one entry in :data:`FAMILIES`. Step rules are ComfyUI 0.3.64's, checked on a
running server (KSampler.set_steps and sample in comfy/samplers.py, nodes_custom_sampler.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from .graph import is_link

Size = tuple[int, int, int]  # width, height (pixels) and batch size of what flows out of a node
InputSize = Callable[[str], "tuple[int, int] | None"]
Inputs = Mapping[str, Any]
DEFAULT_SIZE: Size = (512, 512, 1)

# The inputs an image or a latent flows through, from an output node back to where its size is decided.
FLOW_INPUTS = ("images", "image", "samples", "latent_image", "pixels", "latent")


class Behaviour(NamedTuple):
    """One family's observable behaviour; a missing rule means "as the upstream node"."""

    family: str
    size: Callable[[Inputs, Size, InputSize | None], Size] | None = None
    steps: Callable[[Inputs, Mapping[str, Any]], int] | None = None
    seed: Callable[[Inputs, Mapping[str, Any]], int | None] | None = None
    decisive: frozenset[str] = frozenset()  # inputs whose values change what a client sees


def number(value: Any, fallback: Any, kind: type = int) -> Any:
    """A widget's number; a value wired from another node (a primitive) is unknown here: ``fallback``."""
    try:
        return kind(value) if value is not None and not is_link(value) else fallback
    except (TypeError, ValueError):
        return fallback


# ---------------------------------------------------------------- sizes


def _empty(inputs: Inputs, upstream: Size, input_size: InputSize | None) -> Size:
    return number(inputs.get("width"), 512), number(inputs.get("height"), 512), number(inputs.get("batch_size"), 1)


def _loaded(inputs: Inputs, upstream: Size, input_size: InputSize | None) -> Size:
    size = input_size(str(inputs.get("image", ""))) if input_size is not None else None
    return (int(size[0]), int(size[1]), 1) if size else upstream


def _scaled_to(inputs: Inputs, upstream: Size, input_size: InputSize | None) -> Size:
    w, h, b = upstream
    width, height = number(inputs.get("width"), w), number(inputs.get("height"), h)
    # ImageScale/LatentUpscale: 0 keeps the aspect ratio from the other side (comfy.utils.common_upscale callers).
    if width == 0 and height:
        width = max(1, round(w * height / h))
    if height == 0 and width:
        height = max(1, round(h * width / w))
    return width or w, height or h, b


def _scaled_by(inputs: Inputs, upstream: Size, input_size: InputSize | None) -> Size:
    w, h, b = upstream
    factor = number(inputs.get("scale_by"), 1.0, float)
    return max(1, round(w * factor)), max(1, round(h * factor)), b


def _repeated(inputs: Inputs, upstream: Size, input_size: InputSize | None) -> Size:
    w, h, b = upstream
    return w, h, b * max(1, number(inputs.get("amount"), 1))


def _taken(inputs: Inputs, upstream: Size, input_size: InputSize | None) -> Size:
    w, h, b = upstream
    start = number(inputs.get("batch_index"), 0)
    return w, h, max(1, min(number(inputs.get("length"), 1), b - start))


# ---------------------------------------------------------------- sampler steps


def sigma_steps(steps: int, scheduler: str) -> int:
    """How many sigma steps a scheduler yields for ``steps`` (its progress count): ``steps`` except ddim_uniform,
    which spaces 1000 timesteps evenly (comfy/samplers.py ddim_scheduler)."""
    if scheduler == "ddim_uniform" and steps > 0:
        return math.ceil(999 / max(1000 // steps, 1))
    return steps


def _ksampler_steps(inputs: Inputs, workflow: Mapping[str, Any]) -> int:
    # KSampler.set_steps: denoise <= 0 samples nothing; 0 < denoise < 1 keeps the last `steps` sigmas.
    if number(inputs.get("denoise"), 1.0, float) <= 0:
        return 0
    return sigma_steps(int(number(inputs.get("steps"), 20)), str(inputs.get("scheduler", "normal")))


def _advanced_steps(inputs: Inputs, workflow: Mapping[str, Any]) -> int:
    # KSampler.sample: sigmas cut to [start_at_step : end_at_step + 1]; leftover noise changes no count.
    total = sigma_steps(int(number(inputs.get("steps"), 20)), str(inputs.get("scheduler", "normal")))
    end = min(int(number(inputs.get("end_at_step"), 10000)), total)
    return max(0, end - int(number(inputs.get("start_at_step"), 0)))


def _custom_steps(inputs: Inputs, workflow: Mapping[str, Any]) -> int:
    # SamplerCustom(Advanced) sample len(sigmas) - 1 steps; the sigmas come from a scheduler node.
    link = inputs.get("sigmas")
    scheduler = workflow.get(link[0]) if link is not None and is_link(link) else None
    values = scheduler.get("inputs", {}) if isinstance(scheduler, dict) else {}
    if number(values.get("denoise"), 1.0, float) <= 0:
        return 0
    return sigma_steps(int(number(values.get("steps"), 20)), str(values.get("scheduler", "")))


def _seed_of(name: str) -> Callable[[Inputs, Mapping[str, Any]], int | None]:
    def seed(inputs: Inputs, workflow: Mapping[str, Any]) -> int | None:
        value = inputs.get(name)
        if value is not None and is_link(value):  # SamplerCustomAdvanced takes its noise from a RandomNoise node
            source = workflow.get(value[0])
            value = (source.get("inputs") or {}).get("noise_seed") if isinstance(source, dict) else None
        found = number(value, None)
        return int(found) if found is not None else None

    return seed


_SAMPLER_INPUTS = frozenset({"steps", "denoise", "scheduler", "sampler_name"})

FAMILIES: tuple[tuple[frozenset[str], Behaviour], ...] = (
    (frozenset({"EmptyImage", "EmptyLatentImage", "EmptySD3LatentImage", "EmptyHunyuanLatentVideo"}),
     Behaviour("source", size=_empty, decisive=frozenset({"width", "height", "batch_size"}))),
    (frozenset({"LoadImage", "LoadImageOutput"}), Behaviour("source", size=_loaded)),
    (frozenset({"ImageScale", "LatentUpscale"}), Behaviour("resizer", size=_scaled_to, decisive=frozenset({"width", "height"}))),
    (frozenset({"ImageScaleBy", "LatentUpscaleBy"}), Behaviour("resizer", size=_scaled_by, decisive=frozenset({"scale_by"}))),
    (frozenset({"RepeatLatentBatch", "RepeatImageBatch"}), Behaviour("batcher", size=_repeated, decisive=frozenset({"amount"}))),
    (frozenset({"LatentFromBatch", "ImageFromBatch"}), Behaviour("batcher", size=_taken, decisive=frozenset({"batch_index", "length"}))),
    (frozenset({"KSampler"}), Behaviour("sampler", steps=_ksampler_steps, seed=_seed_of("seed"), decisive=_SAMPLER_INPUTS)),
    (frozenset({"KSamplerAdvanced"}), Behaviour("sampler", steps=_advanced_steps, seed=_seed_of("noise_seed"),
                                                decisive=_SAMPLER_INPUTS | {"start_at_step", "end_at_step"})),
    (frozenset({"SamplerCustom"}), Behaviour("sampler", steps=_custom_steps, seed=_seed_of("noise_seed"))),
    (frozenset({"SamplerCustomAdvanced"}), Behaviour("sampler", steps=_custom_steps, seed=_seed_of("noise"))),
    (frozenset({"BasicScheduler", "KarrasScheduler", "ExponentialScheduler", "PolyexponentialScheduler", "SDTurboScheduler"}),
     Behaviour("scheduler", decisive=frozenset({"steps", "denoise", "scheduler"}))),
    (frozenset({"VAEDecode", "VAEDecodeTiled", "VAEEncode", "VAEEncodeTiled"}), Behaviour("decoder")),
    (frozenset({"CheckpointLoaderSimple", "CheckpointLoader", "LoraLoader", "LoraLoaderModelOnly", "VAELoader", "CLIPLoader",
                "DualCLIPLoader", "UNETLoader", "ControlNetLoader", "UpscaleModelLoader"}), Behaviour("loader")),
    (frozenset({"CLIPTextEncode", "CLIPSetLastLayer", "ConditioningCombine", "ControlNetApplyAdvanced"}), Behaviour("encoder")),
)
_BY_CLASS = {cls: behaviour for classes, behaviour in FAMILIES for cls in classes}
PASS_THROUGH = Behaviour("pass-through")

# Every input that decides what a client observes, for any family (matching keeps recordings to equal values).
DECISIVE_INPUTS = frozenset().union(*(b.decisive for _, b in FAMILIES))


def behaviour(class_type: Any) -> Behaviour:
    """The behaviour of a node class (pass-through for classes no family names)."""
    return _BY_CLASS.get(class_type, PASS_THROUGH) if isinstance(class_type, str) else PASS_THROUGH


# ---------------------------------------------------------------- walking a graph


def upstream(workflow: Mapping[str, Any], node_id: str) -> str | None:
    """The node an image or latent flows in from (the first flow input that is a link)."""
    node = workflow.get(node_id)
    inputs = node.get("inputs", {}) if isinstance(node, dict) else {}
    link = next((inputs[k] for k in FLOW_INPUTS if is_link(inputs.get(k))), None)
    return str(link[0]) if link is not None else None


def image_size(workflow: Mapping[str, Any], node_id: str, input_size: InputSize | None = None, _seen: frozenset[str] = frozenset()) -> Size:
    """(width, height, batch) flowing out of ``node_id``, read from the graph where its nodes say it."""
    node = workflow.get(node_id)
    if not isinstance(node, dict) or node_id in _seen:
        return DEFAULT_SIZE
    source = upstream(workflow, node_id)
    size = image_size(workflow, source, input_size, _seen | {node_id}) if source is not None else DEFAULT_SIZE
    rule = behaviour(node.get("class_type")).size
    return rule(node.get("inputs", {}), size, input_size) if rule is not None else size


def output_size(workflow: Mapping[str, Any], node_id: str, input_size: InputSize | None = None) -> Size:
    """(width, height, batch) of the images an output node receives."""
    source = upstream(workflow, node_id)
    return image_size(workflow, source, input_size) if source is not None else DEFAULT_SIZE


def sampler_steps(workflow: Mapping[str, Any], node_id: str) -> int | None:
    """How many progress steps a node reports (None: it reports none, it is not a sampler)."""
    node = workflow.get(node_id)
    if not isinstance(node, dict):
        return None
    rule = behaviour(node.get("class_type")).steps
    return rule(node.get("inputs", {}), workflow) if rule is not None else None


def seed(workflow: Mapping[str, Any], node_id: str) -> int | None:
    """The seed of the sampler an output's images come from (None when no sampler made them)."""
    holder = seed_holder(workflow, node_id)
    return seed_at(workflow, holder) if holder is not None else None


def seed_holder(workflow: Mapping[str, Any], node_id: str) -> str | None:
    """The node whose seed :func:`seed` reads for ``node_id`` (None when no sampler made its images): found by classes
    and links alone, so graphs of one structure share it."""
    seen: set[str] = set()
    current: str | None = node_id
    while current is not None and current not in seen:
        seen.add(current)
        node = workflow.get(current)
        if not isinstance(node, dict):
            return None
        if behaviour(node.get("class_type")).seed is not None:
            return current
        current = upstream(workflow, current)
    return None


def seed_at(workflow: Mapping[str, Any], holder: str) -> int | None:
    """The seed a sampler node (a :func:`seed_holder`) gives its images."""
    node = workflow.get(holder)
    rule = behaviour(node.get("class_type")).seed if isinstance(node, dict) else None
    return rule(node.get("inputs", {}), workflow) if rule is not None and isinstance(node, dict) else None
