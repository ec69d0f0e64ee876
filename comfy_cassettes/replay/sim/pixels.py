"""Pictures for runs no recording has pixels for: sampler previews and output images, deterministic per seed.

A sampler's picture starts as a latent-sized image drawn from its seed (the same seed and size give the same
bytes, another seed another picture), revealed step by step in the previews. Previews are framed like ComfyUI's
latent2rgb previews (latent_preview.py, server.py send_image): the latent-sized picture scaled to fit
``--preview-size`` with BILINEAR (upscaling too), JPEG quality 95.
"""

from __future__ import annotations

import functools
import io
import random
import zlib

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

LATENT_SCALE = 8  # an SD latent pixel is 8x8 image pixels


def _latent(seed: int, width: int, height: int, index: int) -> Image.Image:
    """The seed's picture at latent resolution (index: the image's place in its batch): a few random colours
    blended smoothly, so pictures differ by seed and still compress like a real one."""
    size = (max(1, width // LATENT_SCALE), max(1, height // LATENT_SCALE))
    return _blobs(f"comfy-cassettes:{seed}:{index}", size)


def _blobs(key: str, size: tuple[int, int]) -> Image.Image:
    from PIL import Image  # imported on first use: at boot it cost a tenth of serve's start-up

    cells = (min(size[0], 4), min(size[1], 4))
    coarse = Image.frombytes("RGB", cells, random.Random(key).randbytes(cells[0] * cells[1] * 3))
    return coarse.resize(size, Image.Resampling.BILINEAR)


@functools.lru_cache(maxsize=256)
def output_png(seed: int, width: int, height: int, index: int = 0) -> bytes:
    """The PNG a sampler with ``seed`` would produce at ``width`` x ``height`` (SaveImage's compress_level 4).

    Deflated run-length only: the same pixels in a third more bytes, a quarter less time (the encoding was
    nearly all of a new seed's 10 ms at 512x768; PIL's row filtering, the rest, has no cheaper setting)."""
    from PIL import Image

    image = _latent(seed, width, height, index).resize((max(1, width), max(1, height)), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=4, compress_type=zlib.Z_RLE)
    return buffer.getvalue()


@functools.lru_cache(maxsize=1024)
def preview_jpeg(seed: int, width: int, height: int, step: int, steps: int, preview_size: int = 512) -> bytes:
    """Step ``step`` of ``steps``'s preview of the first image of the batch: noise giving way to the picture."""
    from PIL import Image, ImageOps

    final = _latent(seed, width, height, 0)
    noise = _blobs(f"comfy-cassettes:{seed}:noise:{step}", final.size)
    picture = Image.blend(noise, final, step / max(steps, 1))
    picture = ImageOps.contain(picture, (preview_size, preview_size), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()
