"""Output entries as newer ComfyUI sends them: image ``metadata`` read from the files, and with assets on, the
asset ids (comfy_execution/media_enrichment.py and asset_enrichment.py in ComfyUI 0.38)."""

from __future__ import annotations

from typing import Any

from .asset_store import Assets
from .outputs import OutputFiles


class OutputEnricher:
    """Adds what a profile's ComfyUI adds to each output entry that names a file."""

    def __init__(self, files: OutputFiles, assets: Assets) -> None:
        self.files = files
        self.assets = assets

    def enrich(self, output: Any, prompt_id: str) -> Any:
        """``metadata`` {"kind": "image", "width", "height"} read from the entry's file, and with assets on, the
        asset ``id`` and ``preview_id``. Entries naming no file stay as they are."""
        if not isinstance(output, dict):
            return output
        enriched: dict[str, Any] = {}
        for key, entries in output.items():
            if isinstance(entries, list):
                enriched[key] = [self._entry(e, prompt_id) if isinstance(e, dict) and "filename" in e else e for e in entries]
            else:
                enriched[key] = entries
        return enriched

    def _entry(self, entry: dict[str, Any], prompt_id: str) -> dict[str, Any]:
        entry = dict(entry)
        size = self.files.dimensions(entry) if "metadata" not in entry else None
        if size is not None:
            entry["metadata"] = {"kind": "image", "width": size[0], "height": size[1]}
        served = self.files.served(entry) if self.assets.enabled else None
        if served is not None:
            kind = str(entry.get("type", "output"))
            asset = self.assets.register(served, name=str(entry["filename"]), kind=kind, subfolder=str(entry.get("subfolder", "")),
                                         tags=[kind], job_id=prompt_id, metadata=entry.get("metadata"))
            entry["id"] = asset.id
            if asset.mime_type.startswith("image/"):
                entry["preview_id"] = asset.id  # an image is its own preview
        return entry
