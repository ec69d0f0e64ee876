"""What the recorded server says about itself: its /object_info with the declared models in its loader lists,
its model folders and files, /embeddings, and whether a recorded answer needs changing for the version served."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ...comfy import model_files as models, profiles
from ...comfy.model_files import listed_models
from ...comfy.profiles import Profile
from ...comfy.validation import NodeSpecs
from ...cassette.model import Cassette, Job
from ..config import ReplayConfig
from .interactions import InteractionIndex


class Catalogue:
    """The informational answers of one replay, built from its cassettes and base once and kept."""

    def __init__(self, interactions: InteractionIndex, base: Cassette | None, jobs: list[Job], config: ReplayConfig,
                 profile: Profile, recorded_version: str | None, *, input_folder: Path) -> None:
        self.interactions = interactions
        self.base = base
        self.jobs = jobs
        self.config = config
        self.profile = profile
        self.recorded_version = recorded_version
        self.input_folder = input_folder
        self.declared = models.by_folder(config.models)  # FOLDER -> names, as if the files were in the model folders
        self.started = time.time()  # when this replay started: the time its declared model files were written
        self._object_info: dict[str, Any] | None = None
        self._recorded_models: dict[str, list[str]] = {}
        self._object_info_loaded = False
        self._specs: NodeSpecs | None = None
        self._encoded: tuple[tuple[str, ...], bytes] | None = None  # the input listing it was made with, the text

    def as_recorded(self, path: str) -> bool:
        """Whether the recording answering GET ``path`` (a cassette's or the base's) came from the version the
        server is, so it needs no change."""
        found = self.interactions.find("GET", path, ())
        version = found.cassette.comfyui_version if found is not None else self.recorded_version
        return self.profile.version == profiles.profile(version).version and not self.config.assets

    def recorded_json(self, path: str) -> Any:
        """The JSON a recorded GET ``path`` answered with 200 (the latest recording of it), or None."""
        found = self.interactions.find("GET", path, ())
        if found is None or found.interaction.status != 200:
            return None
        try:
            return json.loads(found.cassette.body(found.interaction))
        except ValueError:
            return None

    def object_info(self) -> dict[str, Any] | None:
        """The recorded /object_info catalogue with the declared models in its loader lists (built once, kept).

        From the base, it also lists the models the cassettes' recorded jobs loaded: the recorded server had them.
        """
        if not self._object_info_loaded:
            self._object_info_loaded = True
            recorded = self.recorded_json("/object_info")
            if isinstance(recorded, dict):
                self._recorded_models = listed_models(recorded)
                found = self.interactions.find("GET", "/object_info", ())
                if found is not None and found.cassette is self.base:
                    for folder, names in models.used_by(job.workflow for job in self.jobs if job.status != "rejected").items():
                        self._recorded_models[folder] = models.folder_list(self._recorded_models.get(folder, []), names, folder)
                        recorded = models.declare(recorded, {folder: names})
                self._object_info = models.declare(recorded, self.declared) if self.declared else recorded
        return self._object_info

    def node_specs(self) -> NodeSpecs | None:
        """What validation reads from :meth:`object_info`, kept with it (the catalogue is built once and never
        changed: the live input listing only enters GET /object_info's answer, and LoadImage's check looks at the
        folder itself)."""
        if self._specs is None:  # (then kept: every POST /prompt asks)
            object_info = self.object_info()
            self._specs = NodeSpecs(object_info) if object_info is not None else None
        return self._specs

    def model_folders(self) -> list[str]:
        """GET /models: the recorded server's folders (with the ones the served version adds, when recorded from
        another), else ComfyUI's."""
        recorded = self.recorded_json("/models")
        if not isinstance(recorded, list):
            return list(models.FOLDERS)
        folders = [str(f) for f in recorded]
        return folders if self.as_recorded("/models") else self.profile.model_folders(folders)

    def embeddings(self) -> list[str]:
        """GET /embeddings: the recorded answer with the declared embeddings, extensions taken off like ComfyUI."""
        recorded = self.recorded_json("/embeddings")
        names = [str(n) for n in recorded] if isinstance(recorded, list) else []
        return sorted(set(names) | set(models.embeddings(self.declared.get("embeddings", []))))

    def model_files(self, folder: str) -> list[str] | None:
        """GET /models/{folder}: the recorded server's files with the declared ones; None for an unknown folder."""
        if folder not in self.model_folders():
            return None
        self.object_info()
        recorded = self.recorded_json(f"/models/{folder}")
        files = [str(f) for f in recorded] if isinstance(recorded, list) else []
        return models.folder_list([*files, *self._recorded_models.get(folder, [])], self.declared.get(folder, []), folder)

    def object_info_text(self, catalogue: dict[str, Any]) -> bytes:
        """GET /object_info's body, as aiohttp's json_response writes it: made again only when the input folder's
        listing changed (the catalogue is about 500 KB of JSON, a web page and ComfyScript ask for it at start)."""
        listing = tuple(self.input_images())
        if self._encoded is None or self._encoded[0] != listing:
            self._encoded = (listing, json.dumps(self.live_object_info(catalogue, listing)).encode())
        return self._encoded[1]

    def live_object_info(self, catalogue: dict[str, Any], listing: tuple[str, ...] | None = None) -> dict[str, Any]:
        """The catalogue with upload widgets listing the input folder's images, as ComfyUI lists them live."""
        patched: dict[str, Any] | None = None
        for name, info in catalogue.items():
            required = ((info or {}).get("input") or {}).get("required") or {}
            for key, spec in required.items():
                if (
                    isinstance(spec, list) and len(spec) == 2 and isinstance(spec[0], list)
                    and isinstance(spec[1], dict) and spec[1].get("image_upload") and "image_folder" not in spec[1]
                ):
                    if patched is None:
                        patched = dict(catalogue)
                    node = json.loads(json.dumps(info))
                    node["input"]["required"][key] = [list(listing) if listing is not None else self.input_images(), spec[1]]
                    patched[name] = node
        return patched if patched is not None else catalogue

    def input_images(self) -> list[str]:
        """Top-level image files of the input folder, sorted (ComfyUI's LoadImage.INPUT_TYPES)."""
        suffixes = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
        return sorted(p.name for p in self.input_folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
