"""ComfyUI's node classes as the replay needs to know them: outputs, inputs that matter and inputs that do not.

Node *behaviour* (what a loader, a sampler, a decoder does to a run) lives with the node families; this module
holds the tables every layer reads: record (what identifies a workflow), replay (matching, synthesis), vcr.
"""

from __future__ import annotations

# Output nodes the replay can run: the folder kind their images go to ("output": SaveImage writes to the output
# folder; "temp": PreviewImage; None: SaveImageWebsocket sends them over /ws and writes nothing).
OUTPUT_CLASSES: dict[str, str | None] = {"SaveImage": "output", "PreviewImage": "temp", "SaveImageWebsocket": None}

# Core nodes whose IS_CHANGED answers something new on every prompt, so ComfyUI never takes them (nor what they feed)
# from its cache: SaveImageWebsocket returns time.time() (custom_nodes/websocket_image_save.py), so re-running the
# same prompt sends its images over /ws again (checked against ComfyUI 0.8.0).
NEVER_CACHED = frozenset({"SaveImageWebsocket"})

# Inputs that vary per run without changing what the server does: never used to tell recordings apart.
VOLATILE_INPUTS = frozenset({"seed", "noise_seed", "text", "filename_prefix"})

# POST /prompt body keys whose values change on every run of the same request (vcr matching ignores them).
VOLATILE_KEYS = ("client_id", "prompt_id")

# Core nodes whose VALIDATE_INPUTS(image) checks the file on disk instead of the option list
# (error_invalid_prompt: LoadImage -> "image - Invalid image file: does_not_exist.png").
FILE_CHECKED_INPUTS: dict[str, str] = {"LoadImage": "image", "LoadImageMask": "image", "LoadImageOutput": "image"}

# GET /node_replacements of a ComfyUI 0.14.0+ without custom nodes: the built-in replacements of deprecated or
# misspelt node classes (comfy_extras/nodes_replacements.py, registered in this order), each as NodeReplace.as_dict()
# writes it (comfy_api/latest/_io.py: old_widget_ids, input_mapping and output_mapping null when not given).
NODE_REPLACEMENTS: dict[str, list[dict[str, object]]] = {
    old: [{"new_node_id": new, "old_node_id": old, "old_widget_ids": widgets, "input_mapping": inputs, "output_mapping": outputs}]
    for old, new, widgets, inputs, outputs in (
        ("ResizeImagesByLongerEdge", "ImageScaleToMaxDimension", ["longer_edge"],
         [{"new_id": "image", "old_id": "images"}, {"new_id": "largest_size", "old_id": "longer_edge"},
          {"new_id": "upscale_method", "set_value": "lanczos"}],
         [{"new_idx": 0, "old_idx": 0}]),
        ("ImageBatch", "BatchImagesNode", None,
         [{"new_id": "images.image0", "old_id": "image1"}, {"new_id": "images.image1", "old_id": "image2"}], None),
        ("ImageScaleBy", "ResizeImageMaskNode", ["upscale_method", "scale_by"],
         [{"new_id": "input", "old_id": "image"}, {"new_id": "resize_type", "set_value": "scale by multiplier"},
          {"new_id": "resize_type.multiplier", "old_id": "scale_by"}, {"new_id": "scale_method", "old_id": "upscale_method"}],
         None),
        ("T2IAdapterLoader", "ControlNetLoader", None, [{"new_id": "control_net_name", "old_id": "t2i_adapter_name"}], None),
        ("Load3DAnimation", "Load3D", None, None, None),
        ("Preview3DAnimation", "Preview3D", None, None, None),
        ("SDV_img2vid_Conditioning", "SVD_img2vid_Conditioning", None, None, None),
        ("ConditioningAverage ", "ConditioningAverage", None, None, None),  # the old name's trailing space is ComfyUI's
    )
}
