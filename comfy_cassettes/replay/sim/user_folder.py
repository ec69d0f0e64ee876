"""ComfyUI's user directory as state: what the page writes lands in real files in ComfyUI's layout, and a reset
puts the folder back as it was when the server started (app/user_manager.py, app/app_settings.py)."""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from ...cassette.model import Interaction
from ...comfy.routes import is_route
from ..harness.kept_files import KeptFiles

DEFAULT_USER = "default"  # single-user mode (user_manager.py:47)
SETTINGS_FILE = "comfy.settings.json"
USERS_FILE = "users.json"

class UserFolder:
    """ComfyUI's user directory, with what it held at start kept so a reset can put it back."""

    def __init__(self, root: Path, recorded_ids: Iterable[tuple[str, str]] = ()) -> None:
        self.root = Path(os.path.abspath(root))
        self.root.mkdir(parents=True, exist_ok=True)
        self._kept = KeptFiles(self.root, *self._snapshot())
        self.users: dict[str, str] = {DEFAULT_USER: DEFAULT_USER}
        # (name, id) each POST /users of the recordings answered, in order: the ids a replay hands out again
        self._recorded_ids = list(recorded_ids)

    def _snapshot(self) -> tuple[dict[str, bytes], list[str]]:
        """Every file under the root (relative POSIX path -> its bytes) and every folder."""
        files: dict[str, bytes] = {}
        folders: list[str] = []
        for folder, _, names in os.walk(self.root):
            rel = Path(folder).relative_to(self.root).as_posix()
            if rel != ".":
                folders.append(rel)
            files.update({(name if rel == "." else f"{rel}/{name}"): Path(folder, name).read_bytes() for name in names})
        return files, folders

    def reset(self) -> None:
        """Back to what the folder held when the server started (empty for the default temporary one); a file
        nobody changed since is kept as it is."""
        self._kept.restore()
        self.users = {DEFAULT_USER: DEFAULT_USER}

    @property
    def user_root(self) -> Path:
        return self.root / DEFAULT_USER

    def path(self, file: str | None, *, create_dir: bool = True) -> str | None:
        """get_request_user_filepath (user_manager.py:68-98): the path of ``file`` in the user's folder, None when
        it leaves it. A name holding ``%`` is URL-decoded once more; the parent folder is created, even for a GET."""
        user_root = os.path.abspath(self.user_root)
        path = user_root
        if file is not None:
            if "%" in file:
                file = unquote(file)
            path = os.path.abspath(os.path.join(user_root, file))
            if os.path.commonpath((user_root, path)) != user_root:
                return None
        parent = os.path.split(path)[0]
        if create_dir and not os.path.exists(parent):
            os.makedirs(parent, exist_ok=True)
        return path

    def settings(self) -> Any:
        """The settings file, re-read on every request; missing or corrupt is ``{}`` (app_settings.py:11-28)."""
        file = self.path(SETTINGS_FILE)
        assert file is not None
        if not os.path.isfile(file):
            return {}
        try:
            with open(file) as f:
                return json.load(f)
        except Exception:  # noqa: BLE001 - ComfyUI logs "corrupted" and starts over
            return {}

    def save_settings(self, settings: Any) -> None:
        file = self.path(SETTINGS_FILE)
        assert file is not None
        with open(file, "w") as f:
            f.write(json.dumps(settings, indent=4))  # no trailing newline, like ComfyUI

    def add_user(self, name: str) -> str:
        """user_manager.py:100-112: an id from the name plus a UUID, written to users.json."""
        name = name.strip()
        if not name:
            raise ValueError("username not provided")
        # The id ends in a random UUID; a recording's answer for this name, not handed out yet, is the replay's.
        recorded = (known for recorded_name, known in self._recorded_ids if recorded_name == name and known not in self.users)
        user_id = next(recorded, None) or re.sub("[^a-zA-Z0-9-_]+", "-", name) + "_" + str(uuid.uuid4())
        self.users[user_id] = name
        with open(self.root / USERS_FILE, "w") as f:
            json.dump(self.users, f)
        return user_id


def recorded_user_ids(interactions: Iterable[Interaction]) -> list[tuple[str, str]]:
    """(name, id) of each recorded POST /users that made a user: its body's stripped username, the id it answered."""
    found = []
    for item in interactions:
        if item.method != "POST" or not is_route(item.path, "/users") or item.status != 200:
            continue
        try:
            sent, answered = json.loads(item.request_body or ""), json.loads(item.body)
        except (ValueError, TypeError):
            continue
        if isinstance(sent, dict) and isinstance(sent.get("username"), str) and isinstance(answered, str):
            found.append((sent["username"].strip(), answered))
    return found
