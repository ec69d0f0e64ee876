"""ComfyUI's node classes as the replay needs to know them: outputs, inputs that matter and inputs that do not.

Node *behaviour* (what a loader, a sampler, a decoder does to a run) lives with the node families; this module
holds the tables every layer reads: record (what identifies a workflow), replay (matching, synthesis), vcr.
"""

from __future__ import annotations

# Output nodes the replay can run: the folder kind their images go to ("output": SaveImage writes to the output
# folder; "temp": PreviewImage; None: SaveImageWebsocket sends them over /ws and writes nothing).
OUTPUT_CLASSES: dict[str, str | None] = {"SaveImage": "output", "PreviewImage": "temp", "SaveImageWebsocket": None}

# Inputs that vary per run without changing what the server does: never used to tell recordings apart.
VOLATILE_INPUTS = frozenset({"seed", "noise_seed", "text", "filename_prefix"})

# Inputs that decide how many images come out: a recording with other values would replay the wrong count.
COUNT_INPUTS = frozenset({"batch_size", "amount", "length"})

# What a new run of the same request changes in a POST /prompt body (vcr matching ignores these).
SEED_INPUTS = frozenset({"seed", "noise_seed"})
VOLATILE_KEYS = ("client_id", "prompt_id")

# Core nodes whose VALIDATE_INPUTS(image) checks the file on disk instead of the option list
# (error_invalid_prompt: LoadImage -> "image - Invalid image file: does_not_exist.png").
FILE_CHECKED_INPUTS: dict[str, str] = {"LoadImage": "image", "LoadImageMask": "image", "LoadImageOutput": "image"}

# The inputs an image flows through, from an output node back to where its size is decided.
IMAGE_INPUTS = ("image", "images", "pixels", "samples")
