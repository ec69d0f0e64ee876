"""What differs between ComfyUI versions on the wire, one row per difference: the release it appeared in, the
value it gives a :class:`~comfy_cassettes.comfy.profiles.Profile` field from then on, and where that was
established — a capture (``tests/data/...``) or upstream source (file and commit).

A version gets every row whose ``since`` is not newer than it; the rows of 0.3.64 are the starting point.
Release numbers of upstream commits are the first ``comfyui_version.py`` bump after the commit in
pollockjj/ComfyUI's history (its ``master`` 618b803d is upstream 0.8.0). Rows only read from the newest source
(Comfy-Org/ComfyUI 783545f6 and later stored versions, 0.38.1) without a known release carry ``since="0.38.1"``
and say so: they are absent from the 0.8.0 captures, present in 0.38.1, and nothing narrower is established.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Versions confirmed as a whole, and how: the known range is from the first to the last.
CONFIRMED = {"0.3.64": "captures tests/data/real_sessions (a125cd84)",
             "0.8.0": "captures tests/data/real_sessions_0.8 and a live server (pollockjj/ComfyUI 618b803d)",
             "0.38.1": "upstream source (Comfy-Org/ComfyUI 783545f6 and later stored versions)"}

_C064 = "capture real_sessions/"
_C080 = "capture real_sessions_0.8/"
_UP = "pollockjj/ComfyUI "  # upstream history up to 0.8.0
_NEW = "Comfy-Org/ComfyUI 783545f6 "  # the newest source read
_LIVE080 = "a live 0.8.0 (tests/test_live_versions.py)"
_NO_RELEASE = "; absent in the 0.8.0 captures, release not established"

_FLAGS_0_3 = {"supports_preview_metadata": True, "max_upload_size": 104857600}
_FLAGS_0_4 = {**_FLAGS_0_3, "extension": {"manager": {"supports_v4": True}}}
_FLAGS_0_38 = {"supports_preview_metadata": True, "supports_model_type_tags": True, "max_upload_size": 104857600,
               "extension": {"manager": {"supports_v4": True}}, "node_replacements": True, "assets": False}


@dataclass(frozen=True)
class Difference:
    """One protocol difference: from ``since`` on, Profile field ``field`` is ``value``."""

    since: str
    field: str
    value: Any
    what: str  # what a client sees
    source: str  # a capture, or upstream file @ commit


DIFFERENCES: tuple[Difference, ...] = (
    Difference("0.3.64", "frontend_version", "1.27.10", "required frontend (comfyui-frontend-package)",
               _C064 + "snapshots (/system_stats required_frontend_version)"),
    Difference("0.3.64", "templates_version", "0.1.95", "required workflow templates", _C064 + "snapshots (/system_stats)"),
    Difference("0.3.64", "features", _FLAGS_0_3, "feature_flags and /features: preview metadata, upload size",
               _C064 + "ws_binary_with_metadata, snapshots (/features)"),
    Difference("0.3.67", "global_subgraphs_api", True, "GET /global_subgraphs[/{id}]", _UP + "server.py @ f13cff0b"),
    Difference("0.3.68", "hides_secrets", True, "API keys kept out of queue items (sensitive, item[5])",
               _UP + "server.py @ 8cf2ba4b"),
    Difference("0.3.68", "cached_history_needs_client", True,
               "a prompt sent without client_id: its cached nodes' outputs are left out of its history",
               _UP + "execution.py @ 513b0c46; " + _LIVE080),
    Difference("0.3.69", "stamps_create_time", True, "extra_data.create_time (ms) in queue items and history",
               _UP + "server.py @ 2fde9597; " + _C080 + "basic_save"),
    Difference("0.3.71", "model_folders_added", (("latent_upscale_models", "upscale_models"),),
               "/models lists latent_upscale_models (after upscale_models)",
               _UP + "folder_paths.py @ 943b3b61; " + _C080 + "snapshots"),
    Difference("0.3.76", "move_checks_destination", True,
               "POST /userdata/{file}/move/{dest} refuses a destination outside the user folder with 403 (was a 500)",
               _UP + "app/user_manager.py @ ca7808f2; tests/data/more_sessions_0.8/userdata_odd"),
    Difference("0.4.0", "features", _FLAGS_0_4, "feature_flags and /features add extension.manager.supports_v4",
               _UP + "comfy_api/feature_flags.py @ b4a20acc; " + _C080 + "ws_binary_with_metadata"),
    Difference("0.4.0", "os_is_platform", True, "/system_stats os is sys.platform (linux), not os.name (posix)",
               _UP + "server.py @ b4a20acc; " + _C080 + "snapshots"),
    Difference("0.5.0", "preview_method_per_prompt", True,
               "extra_data.preview_method (none, auto, latent2rgb, taesd) sets that prompt's sampler previews",
               _UP + "execution.py, latent_preview.py @ dbd33045"),
    Difference("0.6.0", "jobs_api", True, "GET /api/jobs and /api/jobs/{id}: statuses pending, in_progress, completed, failed",
               _UP + "server.py, comfy_execution/jobs.py @ 1ca89b81; " + _LIVE080),
    Difference("0.8.0", "validates_combo_options", True, "V3 COMBO inputs checked against their options",
               _UP + "execution.py @ 0be8a76c"),
    Difference("0.8.0", "frontend_version", "1.35.9", "required frontend (comfyui-frontend-package)",
               _UP + "requirements.txt @ 618b803d; " + _C080 + "snapshots"),
    Difference("0.8.0", "templates_version", "0.7.67", "required workflow templates",
               _UP + "requirements.txt @ 618b803d; " + _C080 + "snapshots"),
    Difference("0.12.0", "missing_node_type_errors", True, "an unknown class_type is missing_node_type, not invalid_prompt",
               _NEW + "execution.py"),
    Difference("0.14.0", "node_replacements_api", True, "GET /node_replacements", _NEW + "app/node_replace_manager.py"),
    Difference("0.17.0", "assets_api", True, "/api/assets* and /api/tags (503 unless the assets system is on)",
               _NEW + "app/assets"),
    Difference("0.18.0", "script_cache_control", "no-store", "Cache-Control of .js, .css, index*.json",
               _NEW + "middleware/cache_middleware.py"),
    Difference("0.18.0", "page_cache_control", "no-store, must-revalidate", "Cache-Control of the page",
               _NEW + "server.py get_root"),
    Difference("0.19.0", "refuses_cross_site", True, "Sec-Fetch-Site: cross-site -> 403", _NEW + "server.py"),
    Difference("0.21.0", "userdata_times_in_ms", True, "/userdata?full_info times in ms", _NEW + "app/user_manager.py"),
    Difference("0.23.0", "keeps_earlier_results", True, "the RAM-pressure cache keeps earlier prompts' results",
               _NEW + "comfy_execution/caching.py"),
    Difference("0.25.0", "prompt_id_must_be_uuid", True, "a client prompt_id must be a canonical UUID (invalid_prompt_id)",
               _NEW + "server.py validate_job_id"),
    Difference("0.25.0", "usage_source_header", True, "Comfy-Usage-Source copied into extra_data", _NEW + "server.py"),
    Difference("0.28.0", "view_nosniff", True, "/view files carry X-Content-Type-Options: nosniff", _NEW + "server.py"),
    Difference("0.28.0", "model_folder_extensions", True, "/experiment/models items carry extensions",
               _NEW + "app/model_manager.py"),
    Difference("0.30.0", "user_file_headers", True, "GET /userdata/{file}: nosniff, Content-Disposition",
               _NEW + "app/user_manager.py"),
    Difference("0.34.0", "output_metadata", True, "output entries carry metadata {kind, width, height}",
               _NEW + "execution.py media_enrichment"),
    Difference("0.38.1", "jobs_cancel_api", True, "POST /api/jobs/{id}/cancel and /api/jobs/cancel (0.8.0: 405)",
               _NEW + "server.py" + _NO_RELEASE + "; 405 on " + _LIVE080),
    Difference("0.38.1", "jobs_cancelled_status", True, "an interrupted job is cancelled, not failed (five statuses)",
               _NEW + "comfy_execution/jobs.py" + _NO_RELEASE),
    Difference("0.38.1", "jobs_rich_previews", True, "jobs carry previewable_outputs_count; text and .usdz previews",
               _NEW + "comfy_execution/jobs.py" + _NO_RELEASE),
    Difference("0.38.1", "combo_error_repr", True, "value_not_in_list details show the value's repr",
               _NEW + "execution.py" + _NO_RELEASE),
    Difference("0.38.1", "features", _FLAGS_0_38, "feature_flags add model type tags, node_replacements, assets",
               _NEW + "comfy_api/feature_flags.py" + _NO_RELEASE),
    Difference("0.38.1", "cached_history_needs_client", False, "a cached node's outputs are in history again, client_id or not",
               _NEW + "execution.py emit_cached_output" + _NO_RELEASE),
    Difference("0.38.1", "frontend_version", "1.53.6", "required frontend (comfyui-frontend-package)", _NEW + "requirements.txt"),
    Difference("0.38.1", "templates_version", "0.11.73", "required workflow templates", _NEW + "requirements.txt"),
    Difference("0.38.1", "system_stats", {"deploy_environment": "local-git"},
               "/system_stats system adds deploy_environment", _NEW + "server.py" + _NO_RELEASE),
    Difference("0.38.1", "package_versions",
               (("comfyui-frontend-package", "1.53.6"), ("comfyui-workflow-templates", "0.11.73"),
                ("comfyui-embedded-docs", "0.5.12"), ("comfy-kitchen", "0.2.36"), ("comfy-aimdo", "0.5.5")),
               "/system_stats lists comfy_package_versions", _NEW + "server.py, requirements.txt" + _NO_RELEASE),
)
