"""The input folder as validation and planning see it: whether a LoadImage name exists, and its image size."""

from __future__ import annotations

from ...comfy.folders import FileRoots, annotated_path


class InputFiles:
    """Looks up ComfyUI's annotated input names (``name.png [input]``) in the replay's folders."""

    def __init__(self, roots: FileRoots) -> None:
        self.roots = roots

    def exists(self, name: str) -> bool:
        return annotated_path(self.roots, name) is not None

    def size(self, name: str) -> tuple[int, int] | None:
        """The image's (width, height); None when it is missing or unreadable (the graph's defaults decide)."""
        from PIL import Image

        path = annotated_path(self.roots, name)
        if path is None:
            return None
        try:
            with Image.open(path) as img:
                return int(img.width), int(img.height)
        except Exception:  # noqa: BLE001 - unreadable input: let the graph's defaults decide
            return None
