"""What the installed pytest plugin costs a project that never uses it: pytest start-up on a no-op test, plugin on
vs ``-p no:comfy_cassettes``, run by hand.

    /work/main/.venv/bin/python bench/bench_plugin_cost.py [--runs 15]

Each round runs ``python -m pytest -q -p no:cacheprovider test_noop.py`` in a temporary folder twice, once with
the plugin and once without, in alternating order so machine load falls on both alike. Prints the median (and
min/max) of each, as CPU time (user + system of the pytest process: what the plugin adds, robust to a busy
machine) and as wall time, and the difference of the medians against the 50 ms target. ``--isolated`` turns off
every other plugin's autoload (PYTEST_DISABLE_PLUGIN_AUTOLOAD, ours loaded with ``-p``), so the figure is not
buried in the variance of whatever else is installed. Also prints what importing the plugin module alone takes
(``python -X importtime``). Not a test; the folder is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_MS = 50.0
OFF = ("-p", "no:comfy_cassettes")


def run_once(folder: Path, extra: tuple[str, ...], env: dict[str, str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one pytest process on the no-op test."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra, "test_noop.py"],
                   cwd=folder, check=True, capture_output=True, timeout=300, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def plugin_import_ms(folder: Path) -> float:
    """Cumulative microseconds ``import comfy_cassettes.pytest_plugin`` reports under -X importtime, in ms,
    minus pytest's own (which pytest has loaded anyway when it loads the plugin)."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", "import pytest; import comfy_cassettes.pytest_plugin"],
                            cwd=folder, capture_output=True, text=True, check=True, timeout=60)  # not a checkout
    for line in result.stderr.splitlines():
        found = re.match(r"import time:\s+\d+ \|\s+(\d+) \| comfy_cassettes\.pytest_plugin$", line)
        if found:
            return int(found.group(1)) / 1000
    raise RuntimeError("comfy_cassettes.pytest_plugin not in -X importtime output")


def summary(name: str, values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    return f"{name:<32} median {statistics.median(ms):7.1f} ms   min {ms[0]:7.1f}   max {ms[-1]:7.1f}   (n={len(ms)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="rounds (each runs pytest once with, once without)")
    parser.add_argument("--isolated", action="store_true", help="no other plugin autoloaded; ours loaded with -p")
    args = parser.parse_args()
    env = dict(os.environ)
    on_args: tuple[str, ...] = ()
    if args.isolated:
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        on_args = ("-p", "comfy_cassettes.pytest_plugin")
    on: list[tuple[float, float]] = []
    off: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-plugin-cost-") as name:
        folder = Path(name)
        (folder / "test_noop.py").write_text("def test_noop():\n    pass\n")
        run_once(folder, on_args, env)  # warm the file cache and the bytecode
        run_once(folder, OFF, env)
        for i in range(args.runs):
            pairs = [(on, on_args), (off, OFF)] if i % 2 == 0 else [(off, OFF), (on, on_args)]
            for bucket, extra in pairs:
                bucket.append(run_once(folder, extra, env))
        print("other plugins: " + ("not loaded (--isolated)" if args.isolated else "autoloaded, as installed"))
        for index, kind in enumerate(("CPU", "wall")):
            with_it, without = [r[index] for r in on], [r[index] for r in off]
            print(summary(f"{kind} plugin on", with_it))
            print(summary(f"{kind} -p no:comfy_cassettes", without))
            diff = (statistics.median(with_it) - statistics.median(without)) * 1000
            verdict = "OK" if diff <= TARGET_MS else "OVER"
            print(f"{kind} difference of the medians: {diff:+.1f} ms (target <= {TARGET_MS:.0f} ms): {verdict}")
        print(f"import comfy_cassettes.pytest_plugin alone (after pytest): {plugin_import_ms(folder):.1f} ms")


if __name__ == "__main__":
    main()
