#!/usr/bin/env bash
# Re-create the bundled cassettes from the captured real sessions with the project's own importer.
set -euo pipefail
cd "$(dirname "$0")/.."
SESSIONS=tests/data/real_sessions
OUT=comfy_cassettes/data/cassettes
VERSION=0.3.64  # every capture in $SESSIONS is from ComfyUI 0.3.64 (commit a125cd84), see its README
mkdir -p "$OUT"
# Only what this script makes: the imported cassettes (live recordings in live/ are kept).
for dir in "$SESSIONS"/*/; do rm -f "$OUT/$(basename "$dir").yaml"; done
rm -f "$OUT/comfyui.yaml"
for dir in "$SESSIONS"/*/; do
  name=$(basename "$dir")
  comfy-cassettes import "$dir/session.har" -o "$OUT/$name.yaml" --comfyui-version "$VERSION"
done
# The default for `serve`: the informational snapshots plus the everyday jobs, in one cassette. The txt2img
# session comes second: its /object_info (a checkpoint listed) is the one the default answers with.
comfy-cassettes import --comfyui-version "$VERSION" \
  "$SESSIONS/snapshots/session.har" "$SESSIONS/txt2img/session.har" "$SESSIONS/basic_save/session.har" "$SESSIONS/batch_3/session.har" \
  "$SESSIONS/two_save_nodes/session.har" "$SESSIONS/subfolder_prefix/session.har" \
  "$SESSIONS/load_transform_save/session.har" "$SESSIONS/preview_image/session.har" \
  "$SESSIONS/cached_rerun/session.har" "$SESSIONS/error_execution/session.har" \
  "$SESSIONS/ws_binary_with_metadata/session.har" \
  -o "$OUT/comfyui.yaml"
# The bases of newer versions (the 0.3.64 one is snapshots.yaml above): a real ComfyUI's answers to the
# informational routes `serve` may take from a base (comfy/routes.py BASE_ROUTES), nothing else of its session.
# Their versions and files are listed once, in replay/options.py BUNDLED_BASES.
trimmed=$(mktemp -d)
trap 'rm -rf "$trimmed"' EXIT
python3 - "$trimmed/session.har" tests/data/real_sessions_0.8/snapshots/session.har <<'PY'
import json, sys
from urllib.parse import urlsplit
from comfy_cassettes.comfy.routes import is_base_route
har = json.loads(open(sys.argv[2], encoding="utf-8").read())
har["log"]["entries"] = [e for e in har["log"]["entries"]
                         if e["request"]["method"] == "GET" and urlsplit(e["request"]["url"]).scheme == "http"
                         and is_base_route(urlsplit(e["request"]["url"]).path)]
open(sys.argv[1], "w", encoding="utf-8").write(json.dumps(har))
PY
rm -f "$OUT/bases/comfyui-0.8.0.yaml"
comfy-cassettes import "$trimmed/session.har" -o "$OUT/bases/comfyui-0.8.0.yaml" --comfyui-version 0.8.0
# Content-addressed blobs no cassette in the folder refers to any more (a re-import changed them).
python3 - "$OUT" <<'PY'
import pathlib, re, sys
out = pathlib.Path(sys.argv[1])
for folder in (out, out / "bases"):
    used = set()
    for cassette in folder.glob("*.yaml"):
        used.update(re.findall(r"blobs/([0-9a-f]{64}\.\w+)", cassette.read_text()))
    for blob in (folder / "blobs").iterdir():
        if blob.name not in used:
            blob.unlink()
            print(f"removed unused {blob.name}")
PY
