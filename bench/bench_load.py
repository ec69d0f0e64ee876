"""Cassette load time (comfy_cassettes.cassette.load.load, libyaml C loader) against plain yaml.safe_load, run by hand.

Cassettes measured, all built in a temporary folder that is removed at the end:

- the bundled default ``comfyui.yaml`` (as shipped);
- ``snapshots.yaml`` imported from tests/data/real_sessions/snapshots/session.har (its real 0.5 MB
  /object_info goes to a sidecar blob, so the YAML stays small);
- ``jobs-5mb.yaml``: that import with its jobs and interactions repeated until the YAML is ~5 MB;
- ``inline-5mb.yaml``: one /object_info of ~5 MB (the real catalogue with its node classes cloned) kept
  inline as ``{string: ...}``, as a plain vcrpy recording would have it;
- ``blob-5mb.yaml``: the same 5 MB /object_info as a sidecar blob (how the importer writes it); the engine
  parses it with json.loads on the first POST /prompt, timed separately.

Memory: tracemalloc (Python allocations) of a ReplayEngine built on each, object_info parsed, and the resident
set growth of a fresh process doing the same.

    /work/main/.venv/bin/python bench/bench_load.py [--runs 5] [--size-mb 5]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import gc
import json
import pickle
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from comfy_cassettes.cassette import load as cassette_io
from comfy_cassettes.importer import import_har
from comfy_cassettes.replay.config import DEFAULT_CASSETTE, ReplayConfig
from comfy_cassettes.replay.sim.engine import ReplayEngine

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOTS_HAR = ROOT / "tests" / "data" / "real_sessions" / "snapshots" / "session.har"
TARGET_MS = 100.0  # "tens of ms" for a 5 MB cassette


def median_ms(action: Callable[[], Any], runs: int) -> float:
    """Median CPU time of ``action`` in ms: process CPU, not wall clock, so other work on the machine (other
    test runs share these 2 cores) changes the figure less; for this single-threaded work they agree when idle."""
    timings = []
    for _ in range(runs):
        started = time.process_time()
        action()
        timings.append(time.process_time() - started)
    return statistics.median(timings) * 1000


def without_gc(action: Callable[[], Any]) -> Callable[[], Any]:
    """``action`` with the cyclic garbage collector paused, as a loader could do around yaml.load."""

    def run() -> Any:
        gc.disable()
        try:
            return action()
        finally:
            gc.enable()

    return run


# ---------------------------------------------------------------- building the cassettes


def object_info_ref(document: dict[str, Any]) -> dict[str, Any]:
    """The response body of the recorded GET /object_info (the whole catalogue)."""
    for item in document["interactions"]:
        request, response = item["request"], item["response"]
        if request["method"] == "GET" and request["uri"].split("?")[0].endswith("/object_info"):
            body: dict[str, Any] = response["body"]
            return body
    raise SystemExit("the snapshots capture has no GET /object_info")


def inflated_catalogue(catalogue: dict[str, Any], size: int) -> str:
    """The catalogue with its node classes cloned under new names until its JSON is about ``size`` bytes."""
    text = json.dumps(catalogue)
    grown, copies = dict(catalogue), 0
    while len(text) < size:
        copies += 1
        for name, node in catalogue.items():
            grown[f"{name}_Custom{copies}"] = {**node, "name": f"{name}_Custom{copies}"}
        text = json.dumps(grown)
    return text


def build_cassettes(folder: Path, size: int) -> dict[str, Path]:
    imported = import_har([SNAPSHOTS_HAR], folder / "snapshots.yaml")
    document = yaml.load(imported.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)

    jobs = copy.deepcopy(document)
    base = len(cassette_io.dump(document).encode())
    factor = max(1, round(size / base))
    # Deep copies: repeating the same objects would be dumped as YAML aliases and stay small.
    jobs["interactions"] = [copy.deepcopy(item) for _ in range(factor) for item in document["interactions"]]
    jobs["comfy"]["jobs"] = [copy.deepcopy(job) for _ in range(factor) for job in document["comfy"]["jobs"]]
    cassette_io.save(jobs, folder / "jobs-5mb.yaml")

    catalogue = json.loads(cassette_io.Cassette(imported).read_blob(object_info_ref(document)["file"]))
    big = inflated_catalogue(catalogue, size)
    inline = copy.deepcopy(document)
    object_info_ref(inline).clear()
    object_info_ref(inline)["string"] = big
    cassette_io.save(inline, folder / "inline-5mb.yaml")

    blob = copy.deepcopy(document)
    ref = cassette_io.BlobStore(folder).put(big.encode(), "json")
    object_info_ref(blob)["file"] = ref
    cassette_io.save(blob, folder / "blob-5mb.yaml")
    return {
        "bundled comfyui.yaml": DEFAULT_CASSETTE,
        "imported snapshots.yaml": imported,
        "jobs-5mb.yaml": folder / "jobs-5mb.yaml",
        "inline-5mb.yaml": folder / "inline-5mb.yaml",
        "blob-5mb.yaml": folder / "blob-5mb.yaml",
    }


# ---------------------------------------------------------------- engine memory


def engine_for(path: Path, folder: Path) -> ReplayEngine:
    config = ReplayConfig(cassettes=(path,), output_dir=folder / "out", input_dir=folder / "in", temp_dir=folder / "temp")
    engine = ReplayEngine(config.validated(), [cassette_io.load(path)])
    engine.object_info()
    return engine


def traced_engine_mb(path: Path, folder: Path) -> tuple[float, float]:
    """(retained, peak) MB of Python allocations while building an engine and parsing its object_info."""
    tracemalloc.start()
    engine = engine_for(path, folder)
    retained, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    asyncio.run(engine.stop())
    del engine
    return retained / 1e6, peak / 1e6


def rss_growth_mb(path: Path, folder: Path) -> float:
    """Resident-set growth (VmRSS) of a fresh interpreter from 'imports done' to 'engine built, object_info parsed'.

    /proc rather than ru_maxrss: a child's ru_maxrss starts at its parent's size at fork, hiding the growth.
    """
    code = (
        "import asyncio, sys; from pathlib import Path; sys.path.insert(0, sys.argv[3]); import bench_load as b;"
        "before = b.vm_rss_kib(); e = b.engine_for(Path(sys.argv[1]), Path(sys.argv[2]));"
        "print(b.vm_rss_kib() - before); asyncio.run(e.stop())"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path), str(folder), str(Path(__file__).parent)],
                         check=True, capture_output=True, text=True).stdout
    return int(out.split()[-1]) / 1024


def vm_rss_kib() -> int:
    """This process's current resident set (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


# ---------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size-mb", type=float, default=5.0)
    args = parser.parse_args(argv)
    print(f"cassette load, CPU ms, median of {args.runs} runs (3 above 1 MB); machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
          f"libyaml {'yes' if yaml.__with_libyaml__ else 'NO'}, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="bench-load-") as scratch:
        folder = Path(scratch)
        os.environ["XDG_CACHE_HOME"] = str(folder / "cache")  # the parsed-cassette cache, kept out of ~/.cache
        cassettes = build_cassettes(folder, int(args.size_mb * 1e6))
        print(f"{'cassette':<24} {'YAML MB':>7} {'load()':>7} {'cached':>6} {'safe_load':>9} {'ratio':>6} {'C parse':>7} "
              f"{'no-GC':>6} {'checks':>6} {'JSON':>5} {'pickle':>6} {'obj_info':>8} {'engine':>6} {'peak':>5} {'RSS+':>5}")
        print(f"{'':<24} {'':>7} {'ms':>7} {'ms':>6} {'ms':>9} {'':>6} {'ms':>7} {'ms':>6} {'ms':>6} {'ms':>5} {'ms':>6} "
              f"{'ms':>8} {'MB':>6} {'MB':>5} {'MB':>5}")
        verdicts = []
        for name, path in cassettes.items():
            text = path.read_text(encoding="utf-8")
            document = yaml.load(text, Loader=yaml.CSafeLoader)
            as_json = json.dumps(document, default=lambda value: value.decode("latin-1"))  # rare binary bodies
            as_pickle = pickle.dumps(document, protocol=pickle.HIGHEST_PROTOCOL)
            # Structure-heavy megabytes take seconds to parse: fewer repeats there, one for the pure-Python loader.
            runs = min(args.runs, 3) if len(text) > 1_000_000 else args.runs
            os.environ["COMFY_CASSETTES_CACHE"] = "0"
            load_ms = median_ms(lambda: cassette_io.load(path), runs)
            del os.environ["COMFY_CASSETTES_CACHE"]
            cassette_io.load(path)  # parses once and keeps the parsed form (only above 1 MiB)
            cached_ms = median_ms(lambda: cassette_io.load(path), runs)
            safe_ms = median_ms(lambda: yaml.safe_load(text), 1 if len(text) > 1_000_000 else runs)
            parse_ms = median_ms(lambda: yaml.load(text, Loader=yaml.CSafeLoader), runs)
            no_gc_ms = median_ms(without_gc(lambda: yaml.load(text, Loader=yaml.CSafeLoader)), runs)
            checks_ms = median_ms(lambda: cassette_io.from_dict(document, path), args.runs)
            json_ms = median_ms(lambda: json.loads(as_json), args.runs)
            pickle_ms = median_ms(lambda: pickle.loads(as_pickle), args.runs)
            loaded = cassette_io.load(path)
            engine = ReplayEngine(ReplayConfig(cassettes=(path,), output_dir=folder / "o", input_dir=folder / "i",
                                               temp_dir=folder / "t"), [loaded])

            def parse_object_info() -> None:
                engine._object_info_loaded = False  # the engine keeps the parsed catalogue: forget it each time
                engine.object_info()

            info_ms = median_ms(parse_object_info, args.runs)
            asyncio.run(engine.stop())
            retained, peak = traced_engine_mb(path, folder / "traced")
            rss = rss_growth_mb(path, folder / "rss")
            print(f"{name:<24} {len(text.encode()) / 1e6:>7.2f} {load_ms:>7.1f} {cached_ms:>6.1f} {safe_ms:>9.1f} {load_ms / safe_ms:>6.2f} "
                  f"{parse_ms:>7.1f} {no_gc_ms:>6.1f} {checks_ms:>6.1f} {json_ms:>5.1f} {pickle_ms:>6.1f} "
                  f"{info_ms:>8.1f} {retained:>6.1f} {peak:>5.1f} {rss:>5.1f}", flush=True)
            if "5mb" in name:
                best = min(load_ms, cached_ms)
                verdicts.append(f"{name}: load() {load_ms:.0f} ms first, {cached_ms:.0f} ms from the parsed cache; "
                                f"{'meets' if best <= TARGET_MS else 'MISSES'} the tens-of-ms target (<= {TARGET_MS:.0f} ms)")
    print("load() = comfy_cassettes.cassette.load.load with COMFY_CASSETTES_CACHE=0: read + libyaml parse + validation; cached = "
          "load() again once its parsed form is kept (cassettes above 1 MiB); safe_load = yaml.safe_load, the "
          "pure-Python loader (baseline); ratio = load()/safe_load;\nC parse = yaml.load(CSafeLoader) alone; no-GC = the "
          "same with gc.disable(); checks = from_dict (validation) alone;\nJSON / pickle = json.loads / pickle.loads of "
          "the same document (what a JSON form or a parsed-cassette cache would cost);\nobj_info = the engine's json.loads "
          "of /object_info on the first POST /prompt; engine / peak = tracemalloc retained / peak while building a "
          "ReplayEngine\n(object_info parsed); RSS+ = resident-set growth of a fresh process doing the same")
    for verdict in verdicts:
        print(verdict)
    return 0


if __name__ == "__main__":
    sys.exit(main())
