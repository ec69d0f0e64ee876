"""ComfyUI's HTTP surface: the ``/api`` alias, the routes the replay serves itself, and route patterns.

Every ComfyUI route answers at ``/x`` and at ``/api/x`` (server.py registers each handler twice); this module
is the one place that knows it.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import NamedTuple

API_PREFIX = "/api"


def normalize(path: str) -> str:
    """The route a path names: ``/api/x`` and ``/x/`` are both ``/x``."""
    path = path.rstrip("/") or "/"
    if path == API_PREFIX:
        return "/"
    return path[len(API_PREFIX):] if path.startswith(API_PREFIX + "/") else path


def aliases(path: str) -> tuple[str, str]:
    """Both spellings of a route: ``("/x", "/api/x")``."""
    return path, API_PREFIX + path


def is_route(path: str, route: str) -> bool:
    """Whether ``path`` (with or without the ``/api`` prefix) is ``route``."""
    return normalize(path) == route


def route_matches(pattern: str, path: str) -> bool:
    """``/prompt`` matches ``/prompt`` and ``/api/prompt``; ``*`` globs (``/history/*``); ``*`` alone is every route."""
    if pattern in ("*", ""):
        return True
    pattern = "/" + pattern.lstrip("/")
    candidates = [path]
    if path.startswith(API_PREFIX + "/"):
        candidates.append(path[len(API_PREFIX):])
    return any(fnmatchcase(p, pattern) for p in candidates)


class ComfyRoute(NamedTuple):
    """One route of ComfyUI's API: ``path`` in Starlette's template syntax, ``name`` the handler that serves it."""

    method: str
    path: str
    name: str
    summary: str
    needs: str | None = None  # the Profile flag of the ComfyUI versions that have this route


# The routes the replay computes from its own state (the rest is answered from recordings). Order matters only
# where two templates could match one path: the more specific comes first.
ROUTES: tuple[ComfyRoute, ...] = (
    ComfyRoute("POST", "/prompt", "post_prompt", "Queue a prompt: validated like ComfyUI, answered with prompt_id, number, node_errors"),
    ComfyRoute("GET", "/prompt", "get_prompt", "The queue size: {exec_info: {queue_remaining}}"),
    ComfyRoute("GET", "/queue", "get_queue", "Running and pending queue items"),
    ComfyRoute("POST", "/queue", "post_queue", "Delete pending prompts ({delete: [ids]}) or clear the queue ({clear: true})"),
    ComfyRoute("GET", "/history", "get_history", "Finished prompts, optionally paged by max_items and offset"),
    ComfyRoute("POST", "/history", "post_history", "Delete history entries ({delete: [ids]}) or clear it ({clear: true})"),
    ComfyRoute("GET", "/history/{prompt_id:path}", "get_history_item", "One finished prompt, or {} while queued, running or unknown"),
    ComfyRoute("POST", "/interrupt", "post_interrupt", "Interrupt the running prompt (all, or only {prompt_id})"),
    ComfyRoute("POST", "/free", "post_free", "Free memory; free_memory also drops the execution cache"),
    ComfyRoute("GET", "/features", "get_features", "The server's feature flags"),
    ComfyRoute("GET", "/system_stats", "get_system_stats", "The server's versions, devices and memory"),
    ComfyRoute("GET", "/object_info", "get_object_info", "The node catalogue"),
    ComfyRoute("GET", "/object_info/{node_class:path}", "get_object_info_class", "One node class, or {} when unknown"),
    ComfyRoute("GET", "/models", "get_models", "The model folders"),
    ComfyRoute("GET", "/models/{folder}", "get_models_folder", "The model files of one folder (declared ones included); 404 for an unknown folder"),
    ComfyRoute("GET", "/embeddings", "get_embeddings", "The embeddings, without their file extension"),
    ComfyRoute("GET", "/view", "get_view", "An output, input or temp file (preview= and channel= re-encode it)"),
    ComfyRoute("POST", "/upload/image", "post_upload", "Store an image in the input (or temp/output) folder"),
    ComfyRoute("POST", "/upload/mask", "post_upload", "Store a mask composited onto its original image"),
    # ComfyUI declares these with the /api prefix, then adds /api to every route: also /api/api/jobs (0.6.0+).
    ComfyRoute("GET", "/api/jobs", "get_jobs", "Jobs (pending, in_progress, completed, failed; cancelled since 0.38), filtered, sorted and paged", "jobs_api"),
    ComfyRoute("POST", "/api/jobs/cancel", "post_jobs_cancel", "Cancel several jobs by id: {job_ids: [...]}", "jobs_cancel_api"),
    ComfyRoute("GET", "/api/jobs/{job_id}", "get_job", "One job in full; 404 {error: 'Job not found'}", "jobs_api"),
    ComfyRoute("POST", "/api/jobs/{job_id}/cancel", "post_job_cancel", "Cancel one job: interrupt it if it runs, dequeue it if it waits", "jobs_cancel_api"),
    ComfyRoute("GET", "/node_replacements", "get_node_replacements",
               "Replacements for deprecated node classes, by old class: [{new_node_id, old_node_id, old_widget_ids, input_mapping, output_mapping}]",
               "node_replacements_api"),
    ComfyRoute("GET", "/global_subgraphs", "get_global_subgraphs",
               "Subgraph blueprints by id: {} (no blueprints folder, no custom nodes)", "global_subgraphs_api"),
    ComfyRoute("GET", "/global_subgraphs/{id}", "get_global_subgraph", "One subgraph blueprint with its data, or null", "global_subgraphs_api"),
)

WEBSOCKET_PATH = "/ws"

# What a whole ComfyUI answers that a cassette of one session may never have asked: served from a base cassette
# (a real server's snapshot) when the session lacks them.
BASE_ROUTES = ("/object_info", "/system_stats", "/embeddings", "/extensions", "/features", "/models")


def is_base_route(path: str) -> bool:
    """Whether ``path`` is one of the informational routes a base cassette may answer (sub-paths included)."""
    route = normalize(path)
    return any(route == r or route.startswith(r + "/") for r in BASE_ROUTES)

# First path segments of ComfyUI's own routes (server.py, app/): a request under one of these is ComfyUI traffic,
# anything else another service's.
ROUTE_ROOTS = frozenset({
    "prompt", "history", "queue", "view", "object_info", "system_stats", "upload", "interrupt", "free", "features",
    "embeddings", "extensions", "models", "userdata", "settings", "users", "view_metadata", "ws", "i18n",
    "workflow_templates", "experiment", "internal", "jobs", "assets", "v2", "node_replacements", "global_subgraphs",
})


def is_comfy_path(path: str) -> bool:
    """True for a path ComfyUI serves (``/prompt``, ``/api/history/...``), False for other services."""
    return normalize(path).strip("/").split("/")[0] in ROUTE_ROOTS

# Every route the assets module registers (no /api/api twin: it adds them to the app directly).
ASSET_ROUTES = (
    ("HEAD", "/api/assets/hash/{hash}"), ("GET", "/api/assets"), ("GET", "/api/assets/{id}"),
    ("GET", "/api/assets/{id}/content"), ("POST", "/api/assets/from-hash"), ("POST", "/api/assets"),
    ("PUT", "/api/assets/{id}"), ("DELETE", "/api/assets/{id}"), ("GET", "/api/tags"), ("POST", "/api/assets/{id}/tags"),
    ("DELETE", "/api/assets/{id}/tags"), ("GET", "/api/assets/tags/refine"), ("POST", "/api/assets/seed"),
    ("GET", "/api/assets/seed/status"), ("POST", "/api/assets/seed/cancel"), ("POST", "/api/assets/prune"),
)
