"""ComfyUI's model folders and the loader inputs that list them: where declared model files appear.

Facts from ComfyUI 0.3.64 (folder_paths.py, nodes.py and comfy_extras, checked against a running server with a
file in every folder): the folder keys in ``/models`` order with their file extensions, which node input lists
which folder, and how a folder's list is built (``sorted()`` of the files, code-point order, sub-folders as
``sub/name``). A declared model is a name in a folder, as if the file were there.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..errors import ConfigError

PT_EXTENSIONS = (".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft")

# folder_paths.folder_names_and_paths, in its order (the GET /models answer), with each folder's extensions.
FOLDERS: dict[str, tuple[str, ...]] = {
    "checkpoints": PT_EXTENSIONS, "configs": (".yaml",), "loras": PT_EXTENSIONS, "vae": PT_EXTENSIONS,
    "text_encoders": PT_EXTENSIONS, "diffusion_models": PT_EXTENSIONS, "clip_vision": PT_EXTENSIONS,
    "style_models": PT_EXTENSIONS, "embeddings": PT_EXTENSIONS, "diffusers": ("folder",), "vae_approx": PT_EXTENSIONS,
    "controlnet": PT_EXTENSIONS, "gligen": PT_EXTENSIONS, "upscale_models": PT_EXTENSIONS, "custom_nodes": (),
    "hypernetworks": PT_EXTENSIONS, "photomaker": PT_EXTENSIONS, "classifiers": ("",), "model_patches": PT_EXTENSIONS,
    "audio_encoders": PT_EXTENSIONS,
}
# The folders under models/ a key reads when it reads more than its own name (folder_paths.py:23-51), in order.
_SUBFOLDERS = {"text_encoders": ("text_encoders", "clip"), "diffusion_models": ("unet", "diffusion_models"),
               "controlnet": ("controlnet", "t2i_adapter")}
# Keys /experiment/models leaves out (app/model_manager.py folder_black_list).
_NOT_MODELS = ("configs", "custom_nodes")
# Keys whose folder is in ComfyUI's base directory rather than under models/ (folder_paths.py).
_OUTSIDE_MODELS = ("custom_nodes",)
# folder_paths.map_legacy: names a user may know from older ComfyUI (the HTTP routes do not map them).
LEGACY_FOLDERS = {"unet": "diffusion_models", "clip": "text_encoders", "t2i_adapter": "controlnet"}

# Every core input whose option list is a model folder (ComfyUI 0.3.64).
MODEL_INPUTS: dict[str, dict[str, str]] = {
    "CheckpointLoaderSimple": {"ckpt_name": "checkpoints"},
    "CheckpointLoader": {"config_name": "configs", "ckpt_name": "checkpoints"},
    "unCLIPCheckpointLoader": {"ckpt_name": "checkpoints"},
    "ImageOnlyCheckpointLoader": {"ckpt_name": "checkpoints"},
    "CreateHookModelAsLora": {"ckpt_name": "checkpoints"},
    "CreateHookModelAsLoraModelOnly": {"ckpt_name": "checkpoints"},
    "LoraLoader": {"lora_name": "loras"},
    "LoraLoaderModelOnly": {"lora_name": "loras"},
    "CreateHookLora": {"lora_name": "loras"},
    "CreateHookLoraModelOnly": {"lora_name": "loras"},
    "TrainLoraNode": {"existing_lora": "loras"},
    "VAELoader": {"vae_name": "vae"},
    "CLIPLoader": {"clip_name": "text_encoders"},
    "DualCLIPLoader": {"clip_name1": "text_encoders", "clip_name2": "text_encoders"},
    "TripleCLIPLoader": {"clip_name1": "text_encoders", "clip_name2": "text_encoders", "clip_name3": "text_encoders"},
    "QuadrupleCLIPLoader": {f"clip_name{i}": "text_encoders" for i in range(1, 5)},
    "UNETLoader": {"unet_name": "diffusion_models"},
    "ControlNetLoader": {"control_net_name": "controlnet"},
    "DiffControlNetLoader": {"control_net_name": "controlnet"},
    "StyleModelLoader": {"style_model_name": "style_models"},
    "CLIPVisionLoader": {"clip_name": "clip_vision"},
    "GLIGENLoader": {"gligen_name": "gligen"},
    "DiffusersLoader": {"model_path": "diffusers"},
    "HypernetworkLoader": {"hypernetwork_name": "hypernetworks"},
    "UpscaleModelLoader": {"model_name": "upscale_models"},
    "PhotoMakerLoader": {"photomaker_model_name": "photomaker"},
    "ModelPatchLoader": {"name": "model_patches"},
    "AudioEncoderLoader": {"audio_encoder_name": "audio_encoders"},
}

# Entries a node appends after the folder's files (nodes.py VAELoader.vae_list, nodes_train.py TrainLoraNode).
_APPENDED = {("VAELoader", "vae_name"): ("taesd", "taesdxl", "taesd3", "taef1", "pixel_space"),
             ("TrainLoraNode", "existing_lora"): ("[None]",)}
_ALWAYS_APPENDED = {("VAELoader", "vae_name"): ("pixel_space",), ("TrainLoraNode", "existing_lora"): ("[None]",)}


def subfolders(folder: str) -> tuple[str, ...]:
    """The folders under ``models/`` a folder key reads, in ComfyUI's order."""
    return _SUBFOLDERS.get(folder, (folder,))


def folder_paths(folder: str) -> list[str]:
    """The folders a folder key reads, relative: the replay has no ComfyUI directory, where ComfyUI gives
    absolute paths (custom_nodes sits beside models/, not in it)."""
    return [folder] if folder in _OUTSIDE_MODELS else [f"models/{sub}" for sub in subfolders(folder)]


def experiment_folders(folders: Iterable[str], *, extensions: bool = False) -> list[dict[str, Any]]:
    """GET /experiment/models: each model folder key with the folders it reads and, from ComfyUI 0.28.0
    (``extensions``), the file extensions it lists, sorted (app/model_manager.py get_model_folders)."""
    answer: list[dict[str, Any]] = []
    for f in folders:
        if f in _NOT_MODELS:
            continue
        item: dict[str, Any] = {"name": f, "folders": folder_paths(f)}
        if extensions:
            item["extensions"] = sorted(FOLDERS.get(f, ()))
        answer.append(item)
    return answer


def internal_folder_paths(folders: Iterable[str]) -> dict[str, list[str]]:
    """GET /internal/folder_paths: every folder key with the folders it reads
    (api_server/routes/internal/internal_routes.py get_folder_paths)."""
    return {f: folder_paths(f) for f in folders}


def experiment_files(names: Iterable[str], modified: float) -> list[dict[str, Any]]:
    """GET /experiment/models/{folder}: a file entry per model (model_manager.recursive_search_models_); a
    declared model has no file, so it reads as an empty one written when the replay started."""
    return [{"name": n, "pathIndex": 0, "modified": modified, "created": modified, "size": 0} for n in names]


def parse_model(spec: str) -> tuple[str, str]:
    """``checkpoints/v1-5-pruned-emaonly.safetensors`` as (folder, name); a name may hold sub-folders.

    >>> parse_model("loras/style/ink.safetensors")
    ('loras', 'style/ink.safetensors')
    """
    folder, _, name = spec.replace("\\", "/").strip("/").partition("/")
    folder = LEGACY_FOLDERS.get(folder, folder)
    if folder not in FOLDERS:
        raise ConfigError(f"--model {spec!r}: unknown model folder {folder!r}; ComfyUI's folders are {', '.join(FOLDERS)}")
    if not name or ".." in name.split("/") or name.startswith("/"):
        raise ConfigError(f"--model {spec!r}: expected FOLDER/NAME, e.g. checkpoints/v1-5-pruned-emaonly.safetensors")
    extensions = FOLDERS[folder]
    if folder != "diffusers" and extensions and os.path.splitext(name)[1].lower() not in extensions:
        raise ConfigError(f"--model {spec!r}: ComfyUI lists only {', '.join(e or '(no extension)' for e in extensions)} "
                          f"files in {folder}/, so it would never show this one")
    return folder, name


def by_folder(specs: Iterable[str]) -> dict[str, list[str]]:
    """Declared models grouped by folder (each spec checked by :func:`parse_model`)."""
    grouped: dict[str, list[str]] = {}
    for spec in specs:
        folder, name = parse_model(spec)
        if name not in grouped.setdefault(folder, []):
            grouped[folder].append(name)
    return grouped


def folder_list(recorded: Sequence[str], declared: Sequence[str], folder: str) -> list[str]:
    """A folder's file list with declared names added, built as get_filename_list builds it: a sorted set
    (diffusers lists directories in walk order, unsorted)."""
    if folder == "diffusers":
        return list(dict.fromkeys([*recorded, *declared]))
    return sorted(set(recorded) | set(declared))


def declare(catalogue: Mapping[str, Any], declared: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """``/object_info`` with declared models in every loader input that lists their folder (copied on write)."""
    patched: dict[str, Any] = dict(catalogue)
    for cls, inputs in MODEL_INPUTS.items():
        info = catalogue.get(cls)
        if not isinstance(info, dict):
            continue
        node = None
        for name, folder in inputs.items():
            if not declared.get(folder):
                continue
            if node is None:
                node = patched[cls] = copy.deepcopy(info)
            spec = ((node.get("input") or {}).get("required") or {}).get(name)
            if isinstance(spec, list) and spec:
                _add(spec, declared[folder], folder, (cls, name))
    return patched


def _add(spec: list[Any], names: Sequence[str], folder: str, key: tuple[str, str]) -> None:
    """Declared names into one input spec, v1 ``[[...], {...}]`` or v3 ``["COMBO", {"options": [...]}]``."""
    if isinstance(spec[0], list):
        spec[0] = _merged(spec[0], names, folder, key)
    elif spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
        spec[1]["options"] = _merged(list(spec[1].get("options") or []), names, folder, key)


def _merged(current: list[Any], names: Sequence[str], folder: str, key: tuple[str, str]) -> list[Any]:
    appended = _APPENDED.get(key, ())
    files = [n for n in current if n not in appended]
    tail = [n for n in current if n in appended] or list(_ALWAYS_APPENDED.get(key, ()))
    return [*folder_list(files, names, folder), *tail]


def listed_models(catalogue: Mapping[str, Any] | None) -> dict[str, list[str]]:
    """The files each folder held on the recorded server, read back from its ``/object_info`` lists."""
    found: dict[str, list[str]] = {}
    for cls, inputs in MODEL_INPUTS.items():
        info = (catalogue or {}).get(cls)
        required = ((info or {}).get("input") or {}).get("required") or {} if isinstance(info, dict) else {}
        for name, folder in inputs.items():
            spec = required.get(name)
            if not isinstance(spec, list) or not spec:
                continue
            options = spec[0] if isinstance(spec[0], list) else (spec[1].get("options") if len(spec) > 1 and isinstance(spec[1], dict) else [])
            appended = _APPENDED.get((cls, name), ())
            have = found.setdefault(folder, [])
            have.extend(n for n in options or [] if isinstance(n, str) and n not in appended and n not in have)
    return found


def used_by(workflows: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
    """The model files graphs name in their loader inputs, by folder."""
    found: dict[str, list[str]] = {}
    for workflow in workflows:
        for node in workflow.values():
            inputs = MODEL_INPUTS.get(str(node.get("class_type"))) if isinstance(node, dict) else None
            for name, folder in (inputs or {}).items():
                value = (node.get("inputs") or {}).get(name)
                if isinstance(value, str) and value not in found.setdefault(folder, []):
                    found[folder].append(value)
    return found


def embeddings(names: Iterable[str]) -> list[str]:
    """GET /embeddings: the embeddings list with the last extension taken off (server.py get_embeddings)."""
    return [os.path.splitext(name)[0] for name in sorted(names)]
