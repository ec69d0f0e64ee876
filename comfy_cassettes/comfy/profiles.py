"""The ComfyUI versions the replay can be: what differs between them on the wire, kept as data in one place.

Two profiles: **0.3.64**, the version every capture in real-sessions comes from, and **0.38.1**, the newest
release read from ComfyUI's source (server.py, execution.py, comfy_execution/jobs.py, comfy_api/feature_flags.py,
app/user_manager.py at master 783545f6 = 0.33.0 and the later stored versions; see the README's version table).
A cassette replays as the version it was recorded from; ``serve --comfyui-version`` picks one for all.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError


@dataclass(frozen=True)
class Profile:
    """One ComfyUI version's observable behaviour."""

    version: str
    frontend_version: str  # the comfyui-frontend-package it pins (requirements.txt)
    templates_version: str
    features: dict[str, Any]  # GET /features and the /ws feature_flags answer
    jobs_api: bool = False  # /api/jobs (comfy_execution/jobs.py, 0.6.0+)
    assets_api: bool = False  # /api/assets* and /api/tags, 503 unless the assets system is on (0.17.0+)
    prompt_id_must_be_uuid: bool = False  # POST /prompt validate_job_id (0.25.0+)
    stamps_create_time: bool = False  # extra_data.create_time in ms (0.3.69+)
    hides_secrets: bool = False  # API keys kept out of queue items, not only history (0.3.68+)
    usage_source_header: bool = False  # Comfy-Usage-Source copied into extra_data (0.25.0+)
    output_metadata: bool = False  # output entries carry {"kind", "width", "height"} (media_enrichment, 0.34+)
    missing_node_type_errors: bool = False  # unknown class_type -> "missing_node_type" (0.12.0+)
    validates_combo_options: bool = False  # V3 ["COMBO", {"options"}] inputs checked (0.3.64 checks list types only)
    keeps_earlier_results: bool = False  # the RAM-pressure cache keeps every prompt's results (0.23.0+)
    userdata_times_in_ms: bool = False  # /userdata?full_info times (0.21.0+)
    view_nosniff: bool = False  # /view file answers carry X-Content-Type-Options: nosniff (0.28.0+)
    refuses_cross_site: bool = False  # Sec-Fetch-Site: cross-site -> 403 (0.19.0+)
    node_replacements_api: bool = False  # GET /node_replacements (app/node_replace_manager.py, 0.14.0+)
    global_subgraphs_api: bool = False  # GET /global_subgraphs[/{id}] (app/subgraph_manager.py, 0.3.67+)
    model_folder_extensions: bool = False  # /experiment/models items carry "extensions" (0.28.0+)
    user_file_headers: bool = False  # GET /userdata/{file}: nosniff, Content-Disposition, no dangerous types (0.30.0+)
    # The cache_control middleware's value for .js, .css and index*.json, and get_root's for the page itself;
    # both "no-store..." since 0.18.0 (middleware/cache_middleware.py, server.py get_root).
    script_cache_control: str = "no-cache"
    page_cache_control: str = "no-cache"
    system_stats: dict[str, Any] = field(default_factory=dict)  # keys this version sets in /system_stats "system"
    package_versions: tuple[tuple[str, str], ...] = ()  # comfy* packages it pins, for /system_stats

    @property
    def key(self) -> str:
        return ".".join(self.version.split(".")[:2])

    def feature_flags(self, *, assets: bool = False) -> dict[str, Any]:
        """The feature flags this version announces (``assets``: the assets system is on)."""
        flags = copy.deepcopy(self.features)
        if "assets" in flags:
            flags["assets"] = assets
        return flags

    def stats(self, recorded: dict[str, Any]) -> dict[str, Any]:
        """A /system_stats answer recorded from another version, as this one writes it on the same machine:
        its versions, and the keys it adds where server.py puts them."""
        answer = copy.deepcopy(recorded)
        system = answer.get("system")
        if not isinstance(system, dict):
            return answer
        system.update(comfyui_version=self.version, required_frontend_version=self.frontend_version,
                      required_templates_version=self.templates_version, installed_templates_version=self.templates_version)
        if not self.package_versions:
            return answer
        if system.get("os") == "posix":
            system["os"] = "linux"  # sys.platform since 0.4.0, where 0.3.64 sent os.name
        added = {"required_templates_version": {"comfy_package_versions": [
                     {"name": name, "installed": version, "required": version} for name, version in self.package_versions]},
                 "embedded_python": self.system_stats}
        rebuilt: dict[str, Any] = {}
        for key, value in system.items():
            rebuilt[key] = value
            rebuilt.update(added.get(key, {}))
        answer["system"] = rebuilt
        return answer


V0_3_64 = Profile(
    version="0.3.64", frontend_version="1.27.10", templates_version="0.1.95",
    features={"supports_preview_metadata": True, "max_upload_size": 104857600},
)

V0_38 = Profile(
    version="0.38.1", frontend_version="1.53.6", templates_version="0.11.73",
    # comfy_api/feature_flags.py _CORE_FEATURE_FLAGS, in its key order
    features={"supports_preview_metadata": True, "supports_model_type_tags": True, "max_upload_size": 104857600,
              "extension": {"manager": {"supports_v4": True}}, "node_replacements": True, "assets": False},
    jobs_api=True, assets_api=True, prompt_id_must_be_uuid=True, stamps_create_time=True, hides_secrets=True, usage_source_header=True,
    output_metadata=True, missing_node_type_errors=True, validates_combo_options=True, keeps_earlier_results=True, userdata_times_in_ms=True,
    view_nosniff=True, refuses_cross_site=True, node_replacements_api=True, global_subgraphs_api=True, model_folder_extensions=True,
    user_file_headers=True, script_cache_control="no-store", page_cache_control="no-store, must-revalidate",
    system_stats={"deploy_environment": "local-git"},
    package_versions=(("comfyui-frontend-package", "1.53.6"), ("comfyui-workflow-templates", "0.11.73"),
                      ("comfyui-embedded-docs", "0.5.12"), ("comfy-kitchen", "0.2.36"), ("comfy-aimdo", "0.5.5")),
)

PROFILES: dict[str, Profile] = {p.key: p for p in (V0_3_64, V0_38)}
DEFAULT = V0_3_64


def profile(version: str | None) -> Profile:
    """The profile for a ComfyUI version: the newest profile not newer than it (0.3.64 for older or unknown
    versions, which is what every bundled capture is).

    >>> profile("0.38").version, profile("0.41.2").version, profile("0.3.60").version, profile(None).version
    ('0.38.1', '0.38.1', '0.3.64', '0.3.64')
    """
    if version is None:
        return DEFAULT
    try:
        wanted = _parts(version)
    except ValueError:
        raise ConfigError(f"--comfyui-version {version!r}: expected a version such as 0.3.64 or 0.38") from None
    fitting = [p for p in PROFILES.values() if _parts(p.key) <= wanted[:2]]
    return max(fitting, key=lambda p: _parts(p.version)) if fitting else DEFAULT


def _parts(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in str(version).strip().lstrip("v").split("."))
