"""How ComfyUI tells of a prompt it refused: the answer's shape (server.py post_prompt's ``{"error", "node_errors"}``)
and the lines its console logs of it (execution.py validate_prompt, server.py's ``invalid prompt: ...``), for the
replay's own console and for a failing test, whose client may have shown only "400 Bad Request"."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeGuard
from urllib.parse import urlencode

# The 400s post_prompt answers without logging: those its validation did not give (a body without "prompt"; in
# the versions that check it, a prompt_id that is no UUID).
SILENT_REFUSALS = ("no_prompt", "invalid_prompt_id")
# A logged refusal keeps this many characters: enough for the error and the first node errors, and a console (or a
# pipe a test harness reads late) is not flooded by a prompt that echoes a huge value back.
LOG_LINE_LIMIT = 1000


def is_refusal(answer: Any) -> TypeGuard[dict[str, Any]]:
    """Whether an answer is ComfyUI's refused prompt: ``{"error": {...}, "node_errors": {...}}``."""
    return isinstance(answer, dict) and isinstance(answer.get("error"), dict) and isinstance(answer.get("node_errors"), dict)


def refusal_message(answer: Mapping[str, Any]) -> str:
    """The refusal's error on one line: its message, and its details when it has any."""
    error = answer["error"]
    details = str(error.get("details") or "").replace("\n", "; ")
    return f"{error.get('message')}{': ' + details if details else ''}"


def request_line(method: Any, path: Any, query: Mapping[str, Any] | None, status: Any, answer: Any) -> str:
    """A journaled request as one line, ``METHOD /path?query -> status``; for a refused prompt, with ComfyUI's reason
    (its client may have shown only "400 Bad Request").

    >>> request_line("POST", "/prompt", {}, 400, {"error": {"message": "Bad"}, "node_errors": {}})
    'POST /prompt -> 400: invalid prompt: Bad'
    """
    head = f"{method} {path}{'?' + urlencode(query) if query else ''} -> {status}"
    return f"{head}: invalid prompt: {refusal_message(answer)}" if is_refusal(answer) else head


def node_error_lines(node_errors: Mapping[str, Any]) -> list[str]:
    """Each node error as execution.py logs it: ``* class_type node_id:``, then ``  - message: details`` per reason.

    >>> node_error_lines({"1": {"class_type": "EmptyImage", "errors": [{"message": "Bad", "details": "color"}]}})
    ['* EmptyImage 1:', '  - Bad: color']
    """
    lines = []
    for node_id, info in node_errors.items():
        info = info if isinstance(info, Mapping) else {}
        lines.append(f"* {info.get('class_type')} {node_id}:")
        for reason in info.get("errors") or []:
            reason = reason if isinstance(reason, Mapping) else {"message": reason}
            lines.append(f"  - {reason.get('message')}: {reason.get('details', '')}")
    return lines


def log_line(answer: Any) -> str | None:
    """What a console logs of a refused prompt, on one line: server.py's ``invalid prompt: {error}`` (the dict as
    Python prints it) and then, as execution.py logs them before it, the node errors; None for a 400 ComfyUI does
    not log. A line past LOG_LINE_LIMIT characters (a 100 KB class_type) keeps its start and says how long it was."""
    if not is_refusal(answer) or answer["error"].get("type") in SILENT_REFUSALS:
        return None
    node_errors = node_error_lines(answer["node_errors"])
    line = f"invalid prompt: {answer['error']}" + (f" (node errors: {' '.join(node_errors)})" if node_errors else "")
    return line if len(line) <= LOG_LINE_LIMIT else f"{line[:LOG_LINE_LIMIT]}... ({len(line):,} characters)"
