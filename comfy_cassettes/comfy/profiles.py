"""The ComfyUI version the replay is: a version number, and the behaviour every row of the differences table
(differences.py) not newer than it gives. Any version in the known range (the first to the last confirmed
version) is served; an older one is a one-line error, a newer one is emulated as the newest known, with a
notice that ``verify`` tells what differs. A cassette replays as the version it was recorded from;
``serve --comfyui-version`` picks one for all.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from .differences import CONFIRMED, DIFFERENCES


@dataclass(frozen=True)
class Profile:
    """One ComfyUI version's observable behaviour: 0.3.64's, with every row of the differences table that is
    not newer than ``version`` applied (see :func:`profile`)."""

    version: str
    frontend_version: str = ""  # the comfyui-frontend-package it pins (requirements.txt)
    templates_version: str = ""
    features: dict[str, Any] = field(default_factory=dict)  # GET /features and the /ws feature_flags answer
    jobs_api: bool = False
    jobs_cancel_api: bool = False
    jobs_cancelled_status: bool = False
    jobs_rich_previews: bool = False
    assets_api: bool = False
    prompt_id_must_be_uuid: bool = False
    stamps_create_time: bool = False
    hides_secrets: bool = False
    usage_source_header: bool = False
    output_metadata: bool = False
    missing_node_type_errors: bool = False
    validates_combo_options: bool = False
    combo_error_repr: bool = False
    keeps_earlier_results: bool = False
    cached_history_needs_client: bool = False
    preview_method_per_prompt: bool = False
    userdata_times_in_ms: bool = False
    view_nosniff: bool = False
    refuses_cross_site: bool = False
    node_replacements_api: bool = False
    global_subgraphs_api: bool = False
    move_checks_destination: bool = False
    model_folder_extensions: bool = False
    user_file_headers: bool = False
    os_is_platform: bool = False
    model_folders_added: tuple[tuple[str, str], ...] = ()  # (folder, the folder it follows) in /models
    script_cache_control: str = "no-cache"
    page_cache_control: str = "no-cache"
    system_stats: dict[str, Any] = field(default_factory=dict)  # keys this version sets in /system_stats "system"
    package_versions: tuple[tuple[str, str], ...] = ()  # comfy* packages it pins, for /system_stats
    notice: str = ""  # said once when serving: a version newer than any known one is emulated as the newest

    def model_folders(self, recorded: list[str]) -> list[str]:
        """A /models answer recorded from another version, with the folders this one adds (none it lacks)."""
        folders = list(recorded)
        for folder, after in self.model_folders_added:
            if folder not in folders:
                folders.insert(folders.index(after) + 1 if after in folders else len(folders), folder)
        return folders

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
        if self.os_is_platform and system.get("os") == "posix":
            system["os"] = "linux"  # sys.platform, where 0.3.64 sent os.name
        if not self.package_versions:
            return answer
        added = {"required_templates_version": {"comfy_package_versions": [
                     {"name": name, "installed": version, "required": version} for name, version in self.package_versions]},
                 "embedded_python": self.system_stats}
        rebuilt: dict[str, Any] = {}
        for key, value in system.items():
            rebuilt[key] = value
            rebuilt.update(added.get(key, {}))
        answer["system"] = rebuilt
        return answer




def parts(version: str) -> tuple[int, ...]:
    """A version's numbers: ``"v0.8.0"`` -> (0, 8, 0); ValueError when it is not one."""
    numbers = tuple(int(part) for part in str(version).strip().lstrip("v").split("."))
    if not numbers or len(numbers) > 3:
        raise ValueError(version)
    return numbers


def full_version(version: str) -> str:
    """A version as three numbers: "0.38" is the newest confirmed 0.38.x (0.38.1), else X.Y.0."""
    wanted = parts(version)
    if len(wanted) == 3:
        return ".".join(map(str, wanted))
    fitting = [v for v in CONFIRMED if parts(v)[:len(wanted)] == wanted]
    return max(fitting, key=parts) if fitting else ".".join(map(str, wanted + (0,) * (3 - len(wanted))))


OLDEST, NEWEST = min(CONFIRMED, key=parts), max(CONFIRMED, key=parts)
KNOWN_RANGE = f"{OLDEST} to {NEWEST}"


@functools.lru_cache(maxsize=None)
def _folded(version: str, notice: str) -> Profile:
    values: dict[str, Any] = {}
    for row in sorted(DIFFERENCES, key=lambda d: parts(d.since)):
        if parts(row.since) <= parts(version):
            values[row.field] = copy.deepcopy(row.value)
    return Profile(version=version, notice=notice, **values)


def profile(version: str | None) -> Profile:
    """The profile of a ComfyUI version: every difference not newer than it (0.3.64 for a cassette that does
    not know its version). Older than the known range: ConfigError; newer: the newest known, with a notice.

    >>> profile("0.38").version, profile("0.8").version, profile("0.5.0").jobs_api, profile(None).version
    ('0.38.1', '0.8.0', False, '0.3.64')
    >>> profile("9.9").version, bool(profile("9.9").notice)
    ('0.38.1', True)
    """
    if version is None:
        return _folded(OLDEST, "")
    try:
        wanted = full_version(version)
    except ValueError:
        raise ConfigError(f"ComfyUI version {version!r}: expected a version such as 0.3.64 or 0.8.0") from None
    if parts(wanted) < parts(OLDEST):
        raise ConfigError(f"ComfyUI {wanted} is older than the versions known ({KNOWN_RANGE})")
    if parts(wanted) > parts(NEWEST):
        return _folded(NEWEST, f"ComfyUI {wanted} is newer than the versions known ({KNOWN_RANGE}): emulated as {NEWEST}; "
                               f"`comfy-cassettes verify CASSETTE --server URL` against your server lists what differs")
    return _folded(wanted, "")
DEFAULT = profile(None)  # a cassette that does not know its version
