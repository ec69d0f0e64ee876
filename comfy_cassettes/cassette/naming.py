"""Names one job of a cassette for one replay: its fresh ids and each output image's ComfyUI file name, the values
its ``out.<node>.<i>.*`` placeholders take (templating fills them in)."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..comfy.folders import OutputNamer


class ImageSlot(Protocol):
    """An output image to name: which node and index, folder kind (output/temp) and size."""

    @property
    def node(self) -> str: ...
    @property
    def index(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...


def out_name(node: str, index: int, part: str = "filename") -> str:
    """The placeholder name of one output image's ``filename`` or ``subfolder``."""
    return f"out.{node}.{index}.{part}"


@functools.lru_cache(maxsize=1024)
def _out_keys(node: str, index: int) -> tuple[str, str]:
    """One output image's two placeholder names, made once: every job of a graph names the same outputs."""
    return out_name(node, index), out_name(node, index, "subfolder")


@dataclass
class JobBinding:
    """The values of one job's placeholders, and the save nodes ComfyUI refuses when they run.

    ``refused`` maps a node to ComfyUI's message for a ``filename_prefix`` that leads outside the output folder
    (it passes validation and fails at run time: error_execution capture).
    """

    values: dict[str, str | int | float]
    refused: dict[str, str] = field(default_factory=dict)


def bind_job(
    *,
    prompt_id: str,
    number: int | float,
    workflow: Mapping[str, Any],
    images: Sequence[ImageSlot],
    namer: OutputNamer | None,
    client_id: str | None = None,
    known: Mapping[str, Sequence[tuple[str, str]]] | None = None,
    refuse_outside: bool = True,
) -> JobBinding:
    """Name one job: its ids, and each output image by ComfyUI's rule (the node's ``filename_prefix`` in
    ``workflow``, the image size, the counter ``namer`` keeps; PreviewImage's temp names).

    ``known`` gives the names of nodes that are not named again (a cached node reports its previous files; a live
    run already named them). Without ``refuse_outside`` a prefix leading outside the output folder is named as
    ``ComfyUI`` instead of refused.
    """
    values: dict[str, str | int | float] = {"prompt_id": prompt_id, "number": number}
    if client_id is not None:
        values["client_id"] = client_id
    refused: dict[str, str] = {}
    by_node: dict[str, list[ImageSlot]] = {}
    for image in images:
        by_node.setdefault(image.node, []).append(image)
    for node, slots in by_node.items():
        if len(slots) > 1:
            slots.sort(key=lambda s: s.index)
        named = known.get(node) if known else None
        if named:
            for slot, (filename, subfolder) in zip(slots, named):
                values[out_name(node, slot.index)] = filename
                values[out_name(node, slot.index, "subfolder")] = subfolder
            continue
        if namer is None:
            continue
        try:
            subfolder, filenames = _allocate(namer, workflow, node, slots, refuse_outside)
        except ValueError as refusal:
            refused[node] = str(refusal)
            continue
        for slot, filename in zip(slots, filenames):
            name_key, subfolder_key = _out_keys(node, slot.index)
            values[name_key] = filename
            values[subfolder_key] = subfolder
    return JobBinding(values, refused)


def _allocate(namer: OutputNamer, workflow: Mapping[str, Any], node: str, slots: Sequence[ImageSlot], refuse_outside: bool) -> tuple[str, list[str]]:
    """One node's images' subfolder and file names."""
    first = slots[0]
    width, height = first.width or 512, first.height or 512
    if first.kind == "temp":
        named = namer.temp_names(width=width, height=height, count=len(slots))
        return named[0].subfolder, [n.filename for n in named]
    node_data = workflow.get(node)
    inputs = node_data.get("inputs") if isinstance(node_data, dict) else None
    prefix = inputs.get("filename_prefix", "ComfyUI") if isinstance(inputs, dict) else "ComfyUI"
    prefix = prefix if isinstance(prefix, str) else "ComfyUI"
    try:
        subfolder, names = namer.allocate("output", prefix, width, height, len(slots))
    except ValueError:
        if refuse_outside:
            raise
        subfolder, names = namer.allocate("output", "ComfyUI", width, height, len(slots))
    return subfolder, names
