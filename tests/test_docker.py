"""The Dockerfile's command line works: its ENTRYPOINT + CMD run as a plain process (no Docker on this machine),
bound to 0.0.0.0 as in the image, answer ComfyUI's routes, guard the admin API with the printed token, and pass
the image's HEALTHCHECK. The image build itself is not tested here (docs/docker.md says so)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instruction(name: str) -> list[str]:
    """An instruction's exec form (a JSON list), continuation lines joined."""
    text = DOCKERFILE.replace("\\\n", " ")
    match = re.search(rf"^{name}\s+(?:--\S+\s+)*(?:CMD\s+)?(\[.*\])\s*$", text, re.M)
    assert match, f"the Dockerfile has no exec-form {name}"
    words = json.loads(match.group(1))
    assert isinstance(words, list) and all(isinstance(w, str) for w in words)
    return words


def test_the_image_command_serves_the_default_on_all_interfaces_with_a_guarded_admin_api() -> None:
    command = instruction("ENTRYPOINT") + instruction("CMD")
    assert command[:2] == ["comfy-cassettes", "serve"] and command[command.index("--host") + 1] == "0.0.0.0"
    image_port = command[command.index("--port") + 1]
    command[command.index("--port") + 1] = "0"  # a free port instead of the image's 8189
    command[0] = str(Path(sys.executable).with_name("comfy-cassettes"))  # the script pip installs, as in the image
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        first, second = process.stdout.readline(), process.stdout.readline()
        port = int(re.search(r"serving http://\S+:(\d+)", first).group(1))  # type: ignore[union-attr]
        token = re.search(r"admin token: (\S+)", second).group(1)  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(url + "/system_stats", timeout=10).json()["system"]["comfyui_version"] == "0.3.64"
        assert httpx.get(url + "/__cassettes__/state", timeout=10).status_code == 401
        assert httpx.get(url + "/__cassettes__/state", headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code == 200
        probe = [word.replace(image_port, str(port)) for word in instruction("HEALTHCHECK")]
        assert probe[0] == "python"
        assert subprocess.run([sys.executable, *probe[1:]], timeout=30).returncode == 0
    finally:
        process.terminate()
        process.communicate(timeout=15)
