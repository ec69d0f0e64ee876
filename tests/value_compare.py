"""Compares a replayed answer with the captured one value by value, as the team's reference comparator
(shared/tools/fidelity.py) does: volatile values (uuids, sids, output names, timestamps) may differ but must map
consistently, captured value to replayed value, across the whole session; everything else must be equal."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable

# Whether our client sent the request behind a status broadcast (the real one sent at the given capture time) only
# after the server was due to send the given non-status frames (indices among the socket's non-status frames).
ClientLate = Callable[[float, range], bool]

VOLATILE = re.compile(
    r"^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32}|.*\.(png|jpg|jpeg|webp)"
    r"|ComfyUI_temp_.*|.*\(\d+\)\..*)$", re.I)
# Numbers a machine or a clock decides (create_time and the jobs API's execution times are wall-clock ms since
# 0.3.69 and 0.6.0, like "timestamp"; a user file's modified/created are its file times; the reference comparator
# predates them).
FREE_NUMBERS = {"timestamp", "ram_free", "vram_free", "torch_vram_free", "ram_total", "vram_total", "torch_vram_total", "size",
                "create_time", "execution_start_time", "execution_end_time", "modified", "created"}
# Lists ComfyUI builds with list(some_set): their order follows str hashing (PYTHONHASHSEED), not the protocol.
SET_KEYS = {"executed", "current_outputs"}
FREE_STRINGS = {"python_version", "pytorch_version", "Date", "Etag", "Last-Modified", "traceback", "exception_message", "argv"}
# Our status broadcasts may sit this close (seconds) to the real ones' neighbours and still count as in place.
STATUS_SLACK = 0.005


@dataclass
class ValueComparer:
    """One session's comparison: the captured -> replayed mapping of volatile values, and what differed."""

    mapping: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def sub(self, text: str) -> str:
        for captured, replayed in sorted(self.mapping.items(), key=lambda kv: -len(kv[0])):
            text = text.replace(captured, replayed)
        return text

    def compare(self, rec: Any, got: Any, path: str, key: str | None = None) -> None:
        """Record every difference between a captured value ``rec`` and the replayed ``got``."""
        if isinstance(rec, dict):
            self._compare_dict(rec, got, path)
        elif isinstance(rec, list):
            self._compare_list(rec, got, path, key)
        elif isinstance(rec, bool) or rec is None:
            if rec != got:
                self.problems.append(f"{path}: {got!r} != {rec!r}")
        elif isinstance(rec, (int, float)):
            if not isinstance(got, (int, float)) or isinstance(got, bool):
                self.problems.append(f"{path}: expected number, got {got!r}")
            elif key not in FREE_NUMBERS and rec != got and key != "number":
                self.problems.append(f"{path}: {got!r} != {rec!r}")
        elif isinstance(rec, str):
            self._compare_str(rec, got, path, key)

    def _compare_dict(self, rec: dict[str, Any], got: Any, path: str) -> None:
        if not isinstance(got, dict):
            self.problems.append(f"{path}: expected object, got {type(got).__name__}")
            return
        if len(rec) == 1 and len(got) == 1 and VOLATILE.match(next(iter(rec))):  # keyed by a prompt_id
            (rkey,), (gkey,) = rec, got
            self.mapping.setdefault(rkey, gkey)
            self.compare(rec[rkey], got[gkey], f"{path}.<{rkey[:8]}>")
            return
        expected = {self.sub(k) if VOLATILE.match(k) else k for k in rec}
        if expected != set(got):
            self.problems.append(f"{path}: keys differ: missing {sorted(expected - set(got))[:6]} extra {sorted(set(got) - expected)[:6]}")
        for k in rec:
            gkey = self.sub(k) if VOLATILE.match(k) else k
            if gkey in got:
                self.compare(rec[k], got[gkey], f"{path}.{k}", "#item" if k == "prompt" else k)

    def _compare_list(self, rec: list[Any], got: Any, path: str, key: str | None) -> None:
        if not isinstance(got, list):
            self.problems.append(f"{path}: expected list, got {type(got).__name__}")
            return
        if key in SET_KEYS and all(isinstance(x, str) for x in rec + got):
            self.compare(sorted(rec), sorted(got), path + "{set}")
            return
        if key is not None and key.startswith("#item") and len(rec) == 5 and isinstance(rec[4], list) and len(got) == 5 and isinstance(got[4], list):
            rec, got, key = rec[:4] + [sorted(rec[4])], got[:4] + [sorted(got[4])], None  # outputs_to_execute: a set
        if len(rec) != len(got):
            self.problems.append(f"{path}: list length {len(got)} != {len(rec)}")
        for i, (a, b) in enumerate(zip(rec, got)):
            self.compare(a, b, f"{path}[{i}]", "#item" if key in ("queue_running", "queue_pending") else key)

    def _compare_str(self, rec: str, got: Any, path: str, key: str | None) -> None:
        if not isinstance(got, str):
            self.problems.append(f"{path}: expected string, got {got!r}")
        elif key in FREE_STRINGS:
            return
        elif rec in self.mapping:
            if self.mapping[rec] != got:
                self.problems.append(f"{path}: {got!r} != mapped {self.mapping[rec]!r}")
        elif VOLATILE.match(rec):
            self.mapping[rec] = got
        elif self.sub(rec) != got:
            self.problems.append(f"{path}: {got[:80]!r} != {rec[:80]!r}")

    def compare_socket(self, name: str, captured: list[tuple[float, str | bytes]], replayed: list[str | bytes],
                       client_late: ClientLate | None = None) -> None:
        """One socket's frames: the same message types in the same order (status broadcasts may trade places
        with frames the real server sent within STATUS_SLACK of them, or that a late client's request let the
        server send first: see ``client_late``), then each text frame by value."""
        rec_types, got_types = [frame_kind(f) for _, f in captured], [frame_kind(f) for f in replayed]
        rec_types, got_types = _status_aligned([t for t, _ in captured], rec_types, got_types, client_late)
        if rec_types != got_types:
            self.problems.append(f"ws {name}: message types differ:\n   real  {rec_types}\n   ours  {got_types}")
            return
        statuses = lambda frames: [f for f in frames if frame_kind(f) == "status"]  # noqa: E731
        others = lambda frames: [f for f in frames if frame_kind(f) != "status"]  # noqa: E731
        frames = [f for _, f in captured]
        for rec, got in [*zip(statuses(frames), statuses(replayed)), *zip(others(frames), others(replayed))]:
            if isinstance(rec, str) and isinstance(got, str):
                parsed = json.loads(rec)
                self.compare(parsed, json.loads(got), f"ws {name} {parsed['type']}")


def frame_kind(frame: str | bytes) -> str:
    return "binary" if isinstance(frame, bytes) else str(json.loads(frame).get("type"))


def _status_aligned(times: list[float], rec_types: list[str], got_types: list[str],
                    client_late: ClientLate | None = None) -> tuple[list[str], list[str]]:
    """Move each of our status frames to the real one's position when only frames the real server sent within
    STATUS_SLACK seconds of that status lie between the two positions, or when ours comes later only because our
    client sent the request behind it after those frames were due; returns (rec_types, ours reordered)."""
    if [t for t in rec_types if t != "status"] != [t for t in got_types if t != "status"] or rec_types.count("status") != got_types.count("status"):
        return rec_types, got_types

    def positions(types: list[str]) -> list[int]:  # for each status: how many non-status frames precede it
        out, n = [], 0
        for t in types:
            if t == "status":
                out.append(n)
            else:
                n += 1
        return out

    non_status_t = [t for t, kind in zip(times, rec_types) if kind != "status"]
    status_t = [t for t, kind in zip(times, rec_types) if kind == "status"]
    for k, (a, b) in enumerate(zip(positions(rec_types), positions(got_types))):
        crossed = range(min(a, b), max(a, b))
        if any(abs(non_status_t[i] - status_t[k]) > STATUS_SLACK for i in crossed) and not (
                b > a and client_late is not None and client_late(status_t[k], crossed)):
            return rec_types, got_types
    return rec_types, list(rec_types)
