"""ComfyUI's routes as the replay serves them, in OpenAPI terms: request and answer shapes as the real captures
show them (``tests/data/real_sessions/``, ComfyUI 0.3.64; the shared README describes each), never guessed.

Shapes stay open (``additionalProperties`` allowed) where ComfyUI's are: a newer ComfyUI adds keys, and a client
generated from this document should not break on them. The 500s listed are ComfyUI's own (aiohttp's crash
body), answered where ComfyUI itself crashes.
"""

from __future__ import annotations

from typing import Any

from ..comfy.protocol import CRASH_BODY
from ..comfy.routes import ROUTES, WEBSOCKET_PATH

REF = "#/components/schemas/"


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF + name}


def _object(properties: dict[str, Any], required: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, **extra}
    if required:
        schema["required"] = list(required)
    return schema


_STR, _INT, _NUM, _BOOL = {"type": "string"}, {"type": "integer"}, {"type": "number"}, {"type": "boolean"}
_OPEN: dict[str, Any] = {"type": "object", "additionalProperties": True}  # said explicitly: generators read a bare object as empty
_IDS = {"type": "array", "items": _STR}

# Shapes named in components/schemas, each from the capture named beside it.
SCHEMAS: dict[str, dict[str, Any]] = {
    "ApiPrompt": {  # the graph of POST /prompt: ComfyUI → Workflow → Export (API)
        "type": "object", "description": "node id -> {class_type, inputs}; a link is [source node id, output index]",
        "additionalProperties": _object({"class_type": _STR, "inputs": _OPEN, "_meta": _OPEN}),
    },
    "PromptRequest": _object({  # prompt_options, error_invalid_prompt
        "prompt": ref("ApiPrompt"), "client_id": _STR, "prompt_id": {**_STR, "description": "used verbatim when given"},
        "number": {**_NUM, "description": "queue position to use; echoed as a float"}, "front": _BOOL,
        "extra_data": _OPEN, "partial_execution_targets": _IDS,
    }),
    "PromptQueued": _object({"prompt_id": _STR, "number": _NUM, "node_errors": _OPEN},
                            ("prompt_id", "number", "node_errors")),  # basic_save
    "ComfyError": _object({"type": _STR, "message": _STR, "details": _STR, "extra_info": _OPEN}, ("type", "message")),
    "PromptRefused": _object({  # error_invalid_prompt
        "error": ref("ComfyError"),
        "node_errors": {"type": "object", "additionalProperties": _object({
            "errors": {"type": "array", "items": ref("ComfyError")}, "dependent_outputs": _IDS, "class_type": _STR})},
    }, ("error", "node_errors")),
    "ExecInfo": _object({"exec_info": _object({"queue_remaining": _INT}, ("queue_remaining",))}, ("exec_info",)),
    "QueueItem": {  # queue_and_history_ops: [number, prompt_id, prompt, extra_data, outputs_to_execute]
        "type": "array", "minItems": 5,
        "prefixItems": [_NUM, _STR, ref("ApiPrompt"), _OPEN, _IDS],
    },
    "QueueState": _object({"queue_running": {"type": "array", "items": ref("QueueItem")},
                           "queue_pending": {"type": "array", "items": ref("QueueItem")}}, ("queue_running", "queue_pending")),
    "DeleteOrClear": _object({"delete": _IDS, "clear": _BOOL}),
    "ImageRef": _object({"filename": _STR, "subfolder": _STR, "type": {"type": "string", "enum": ["output", "temp", "input"]}},
                        ("filename", "subfolder", "type")),
    "HistoryEntry": _object({  # basic_save, error_execution, interrupt
        "prompt": ref("QueueItem"),
        "outputs": {"type": "object", "description": "node id -> its outputs (images: [ImageRef], ...)",
                    "additionalProperties": _object({"images": {"type": "array", "items": ref("ImageRef")}})},
        "status": _object({"status_str": {"type": "string", "enum": ["success", "error"]}, "completed": _BOOL,
                           "messages": {"type": "array", "items": {"type": "array", "prefixItems": [_STR, _OPEN]}}},
                          ("status_str", "completed", "messages")),
        "meta": _OPEN,
    }, ("prompt", "outputs", "status")),
    "History": {"type": "object", "description": "prompt_id -> entry; {} for an unknown, queued or running prompt",
                "additionalProperties": ref("HistoryEntry")},
    "Interrupt": _object({"prompt_id": {**_STR, "description": "interrupt only if this prompt is running"}}),
    "Free": _object({"unload_models": _BOOL, "free_memory": {**_BOOL, "description": "also drops the execution cache"}}),
    "SystemStats": _object({  # snapshots
        "system": _object({"os": _STR, "ram_total": _INT, "ram_free": _INT, "comfyui_version": _STR,
                           "required_frontend_version": _STR, "installed_templates_version": _STR,
                           "required_templates_version": _STR, "python_version": _STR, "pytorch_version": _STR,
                           "embedded_python": _BOOL, "argv": _IDS}),
        "devices": {"type": "array", "items": _object({"name": _STR, "type": _STR, "index": {"type": ["integer", "null"]},
                                                        "vram_total": _INT, "vram_free": _INT, "torch_vram_total": _INT,
                                                        "torch_vram_free": _INT})},
    }, ("system", "devices")),
    "Features": _object({"supports_preview_metadata": _BOOL, "max_upload_size": _INT}),  # snapshots
    "ObjectInfo": {"type": "object", "description": "node class -> its inputs, outputs, category (snapshots)",
                   "additionalProperties": _object({"input": _OPEN, "output": {"type": "array"},
                                                    "name": _STR, "category": _STR})},
    "Upload": _object({"image": {"type": "string", "format": "binary"}, "overwrite": {**_STR, "description": "'true' or '1' replaces"},
                       "subfolder": _STR, "type": {**_STR, "description": "input (default), temp or output"}}, ("image",)),
    "MaskUpload": _object({"image": {"type": "string", "format": "binary"}, "original_ref": {
        **_STR, "description": "JSON {filename, subfolder, type} of the image the mask applies to"},
        "overwrite": _STR, "subfolder": _STR, "type": _STR}, ("image", "original_ref")),
    "Uploaded": _object({"name": _STR, "subfolder": _STR, "type": _STR}, ("name", "subfolder", "type")),  # load_transform_save
    "ComfyCrash": {"type": "string", "const": CRASH_BODY.decode(), "description": "aiohttp's answer when a ComfyUI handler raises"},
}

# The WebSocket's text frames, {"type", "data"} (basic_save, error_execution, interrupt, ws_reconnect, txt2img).
_P, _T = {"prompt_id": _STR}, {"timestamp": _INT}
WS_MESSAGES: dict[str, dict[str, Any]] = {
    "status": _object({"status": _object({"exec_info": _object({"queue_remaining": _INT})}), "sid": _STR}, ("status",)),
    "feature_flags": _object({"supports_preview_metadata": _BOOL, "max_upload_size": _INT}),
    "execution_start": _object({**_P, **_T}, ("prompt_id",)),
    "execution_cached": _object({"nodes": _IDS, **_P, **_T}, ("nodes", "prompt_id")),
    "executing": _object({"node": {"type": ["string", "null"], "description": "null: the prompt is done"},
                          "display_node": _STR, **_P}, ("node",)),
    "progress": _object({"value": _NUM, "max": _NUM, **_P, "node": _STR}, ("value", "max")),
    "progress_state": _object({**_P, "nodes": {"type": "object", "additionalProperties": _object({
        "value": _NUM, "max": _NUM, "state": {"type": "string", "enum": ["running", "finished"]}, "node_id": _STR,
        "prompt_id": _STR, "display_node_id": _STR, "parent_node_id": {"type": ["string", "null"]}, "real_node_id": _STR})}},
        ("prompt_id", "nodes")),
    "executed": _object({"node": _STR, "display_node": _STR, "output": _OPEN, **_P}, ("node", "output", "prompt_id")),
    "execution_success": _object({**_P, **_T}, ("prompt_id",)),
    "execution_error": _object({**_P, "node_id": _STR, "node_type": _STR, "executed": _IDS, "exception_message": _STR,
                                "exception_type": _STR, "traceback": _IDS, "current_inputs": _OPEN,
                                "current_outputs": _IDS, **_T}, ("prompt_id", "node_id", "exception_message")),
    "execution_interrupted": _object({**_P, "node_id": _STR, "node_type": _STR, "executed": _IDS, **_T}, ("prompt_id",)),
}


def _message_name(kind: str) -> str:
    return "Ws" + "".join(part.title() for part in kind.split("_"))


for _kind, _data in WS_MESSAGES.items():
    SCHEMAS[_message_name(_kind)] = _object({"type": {"type": "string", "const": _kind}, "data": _data}, ("type", "data"))
SCHEMAS["WsMessage"] = {
    "description": "a text frame from /ws; binary frames carry previews ([uint32 1][uint32 format][image] or "
                   "[uint32 4][uint32 n][n bytes metadata JSON][image])",
    "oneOf": [ref(_message_name(kind)) for kind in WS_MESSAGES],
    "discriminator": {"propertyName": "type", "mapping": {kind: REF + _message_name(kind) for kind in WS_MESSAGES}},
}

_JSON = "application/json"
_EMPTY = {"description": "empty body"}
_CRASH = {"description": "ComfyUI's own crash (aiohttp's body)", "content": {"text/plain": {"schema": ref("ComfyCrash")}}}


def _json(name: str, description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": ref(name)}}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _path(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": _STR, "description": description}


def _body(name: str, media: str = _JSON) -> dict[str, Any]:
    return {"required": False, "content": {media: {"schema": ref(name)}}}


_IMAGE = {"description": "the file (re-encoded with preview= or channel=)",
          "content": {kind: {"schema": {"type": "string", "format": "binary"}} for kind in ("image/png", "image/webp", "image/jpeg")}}

# Each handler of comfy/routes.py ROUTES: its parameters, body and answers.
OPERATIONS: dict[str, dict[str, Any]] = {
    "post_prompt": {"requestBody": _body("PromptRequest"), "responses": {
        "200": _json("PromptQueued", "queued (node_errors lists refused branches of a partly valid prompt)"),
        "400": _json("PromptRefused", "validation failed, or no prompt"), "500": _CRASH}},
    "get_prompt": {"responses": {"200": _json("ExecInfo")}},
    "get_queue": {"responses": {"200": _json("QueueState")}},
    "post_queue": {"requestBody": _body("DeleteOrClear"), "responses": {"200": _EMPTY, "500": _CRASH}},
    "get_history": {"parameters": [_query("max_items", _INT, "the last N entries"), _query("offset", _INT, "skip the first K")],
                    "responses": {"200": _json("History"), "500": _CRASH}},
    "post_history": {"requestBody": _body("DeleteOrClear"), "responses": {"200": _EMPTY, "500": _CRASH}},
    "get_history_item": {"parameters": [_path("prompt_id", "a prompt_id")], "responses": {"200": _json("History")}},
    "post_interrupt": {"requestBody": _body("Interrupt"), "responses": {"200": _EMPTY, "500": _CRASH}},
    "post_free": {"requestBody": _body("Free"), "responses": {"200": _EMPTY, "500": _CRASH}},
    "get_features": {"responses": {"200": _json("Features")}},
    "get_object_info": {"responses": {"200": _json("ObjectInfo")}},
    "get_object_info_class": {"parameters": [_path("node_class", "a node class, e.g. SaveImage")],
                              "responses": {"200": _json("ObjectInfo", "{class: info}, or {} for an unknown class")}},
    "get_system_stats": {"responses": {"200": _json("SystemStats")}},
    "get_models": {"responses": {"200": {"description": "the model folder names", "content": {_JSON: {"schema": _IDS}}}}},
    "get_models_folder": {"parameters": [_path("folder", "a model folder, e.g. checkpoints")], "responses": {
        "200": {"description": "the file names in it", "content": {_JSON: {"schema": _IDS}}},
        "404": {"description": "unknown folder (empty body)"}}},
    "get_embeddings": {"responses": {"200": {"description": "embedding names", "content": {_JSON: {"schema": _IDS}}}}},
    "get_view": {"parameters": [
        _query("filename", _STR, "file name (an annotation suffix ' [output]' is accepted)"),
        _query("subfolder", _STR, "folder under the type's folder"),
        _query("type", _STR, "output (default), input or temp"),
        _query("preview", _STR, "re-encode: webp;90 or jpeg;90"),
        _query("channel", _STR, "rgb, a or rgba"),
    ], "responses": {"200": _IMAGE, "400": {"description": "empty filename, '..' or an absolute name, unknown type"},
                     "403": {"description": "subfolder outside the folder"}, "404": {"description": "no filename, or no such file"}}},
    "post_upload_image": {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": ref("Upload")}}},
                          "responses": {"200": _json("Uploaded"), "400": {"description": "no image, or a path outside the folder"},
                                        "500": _CRASH}},
    "post_upload_mask": {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": ref("MaskUpload")}}},
                         "responses": {"200": _json("Uploaded"), "400": {"description": "no image, or a path outside the folder"},
                                       "500": _CRASH}},
}


def _undescribed(path: str) -> dict[str, Any]:
    """A route no capture shows (a newer ComfyUI's, per profile): its path parameters and an open answer."""
    names = [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]
    return {"parameters": [_path(name, name) for name in names], "responses": {"200": {"description": "as ComfyUI answers"}}}


def comfy_paths() -> dict[str, dict[str, Any]]:
    """The OpenAPI ``paths`` of ComfyUI's routes (each also served under ``/api``) and of ``/ws``."""
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        path = route.path.replace(":path}", "}")
        operation_id = route.name if route.name != "post_upload" else "post_upload_" + path.rsplit("/", 1)[1]
        operation = {"operationId": operation_id, "summary": route.summary, "tags": ["comfyui"],
                     **OPERATIONS.get(operation_id, _undescribed(path))}
        paths.setdefault(path, {})[route.method.lower()] = operation
    paths[WEBSOCKET_PATH] = {"get": {
        "operationId": "websocket", "tags": ["comfyui"],
        "summary": "The event stream: upgrade to a WebSocket; text frames are WsMessage, binary frames previews",
        "parameters": [_query("clientId", _STR, "your client_id: you get the events of the prompts you submit with it")],
        "responses": {"101": {"description": "switching protocols", "content": {_JSON: {"schema": ref("WsMessage")}}}},
        "x-websocket": {"receive": ref("WsMessage"), "send": {
            "description": "optional first frame: {type: feature_flags, data: {supports_preview_metadata: true}}",
            **_OPEN}},
    }}
    return paths
