"""ComfyUI's fixed protocol values, as the real captures show them (real-sessions README), and how it writes JSON and
ids."""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable, Sequence
from typing import Any

# GET /features and the WebSocket feature_flags answer.
FEATURES: dict[str, Any] = {"supports_preview_metadata": True, "max_upload_size": 104857600}

# aiohttp's answer when a handler raises: malformed JSON in POST /prompt, any crash.
CRASH_BODY = b"500 Internal Server Error\n\nServer got itself in trouble"
CRASH_HEADERS = {"Content-Type": "text/plain; charset=utf-8", "Connection": "close"}

# aiohttp's json_response: json.dumps defaults, utf-8.
JSON_CONTENT_TYPE = "application/json; charset=utf-8"

MAXIMUM_HISTORY_SIZE = 10000  # execution.MAXIMUM_HISTORY_SIZE: the oldest entries go first

# extra_data keys holding API credentials: never in history (execution.py task_done), nor queues from 0.3.68.
SENSITIVE_EXTRA_DATA_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")
# comfy_api/latest/_io.py Hidden: the values /object_info gives hidden inputs, under the same key names as the
# secrets above ("api_key_comfy_org": "API_KEY_COMFY_ORG") yet public type names, not credentials.
HIDDEN_INPUT_TYPES = frozenset({"UNIQUE_ID", "PROMPT", "EXTRA_PNGINFO", "DYNPROMPT", "AUTH_TOKEN_COMFY_ORG", "API_KEY_COMFY_ORG"})

# POST /prompt's 400 for a prompt_id that is not a canonical UUID (server.py, validate_job_id, since 0.25.0).
INVALID_PROMPT_ID = {
    "type": "invalid_prompt_id", "message": "prompt_id must be a valid UUID",
    "details": "prompt_id must be a UUID string in canonical lowercase hyphenated form; omit it to let the server generate one",
    "extra_info": {},
}


def is_canonical_uuid(value: Any) -> bool:
    """comfy_execution/jobs.py validate_job_id: a string equal to ``str(uuid.UUID(value))``."""
    try:
        return isinstance(value, str) and str(uuid.UUID(value)) == value
    except ValueError:
        return False


def uuid4_text(bits: int) -> str:
    """str(uuid.UUID(int=bits, version=4)) written out: the variant and version bits set as UUID sets them, the hex
    grouped as it prints it (UUID's checks and properties cost more than the id itself: the replay's prompt ids).

    >>> import random
    >>> bits = random.Random(7).getrandbits(128)
    >>> uuid4_text(bits) == str(uuid.UUID(int=bits, version=4))
    True
    """
    text = (bits & _UUID4_KEPT | _UUID4_SET).to_bytes(16, "big").hex()  # (to_bytes: a 128-bit value, as UUID checks)
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


# UUID(version=4): the variant bits (62-63) set to 10, the version bits (76-79) to 0100; the rest kept.
_UUID4_KEPT = ~(0xC000 << 48 | 0xF000 << 64)
_UUID4_SET = 0x8000 << 48 | 4 << 76


def request_json(raw: bytes, content_type: str | None = None) -> Any:
    r"""A request body parsed as ComfyUI's handlers parse it (aiohttp's ``request.json()``): decoded with the
    Content-Type's charset, UTF-8 without one, then ``json.loads``. So a byte order mark or a UTF-16 body that
    ``json.loads(bytes)`` would take is refused: ValueError, UnicodeDecodeError, LookupError (unknown charset).

    >>> request_json(b'{"a": 1}'), request_json('{"b": "\u00e9"}'.encode("latin-1"), "application/json; charset=latin-1")
    ({'a': 1}, {'b': 'é'})
    >>> request_json(b'\xef\xbb\xbf{}')
    Traceback (most recent call last):
    json.decoder.JSONDecodeError: Unexpected UTF-8 BOM (decode using utf-8-sig): line 1 column 1 (char 0)
    """
    text = raw.decode((_charset(content_type) if content_type else None) or "utf-8")
    # json.loads(text) for the usual body, a JSON object with nothing around it: its scanner alone, without the
    # checks and whitespace matching loads makes around it (a fifth of the parse). Anything else, or a failure,
    # goes through json.loads, which raises what it raises.
    if text[:1] == "{" and text[-1:] == "}":
        try:
            value, end = _SCAN(text, 0)
        except (ValueError, StopIteration):
            pass
        else:
            if end == len(text):
                return value
    return json.loads(text)


# json.loads' own scanner (json.scanner.make_scanner of a default decoder; typeshed leaves the attribute out).
_SCAN: Callable[[str, int], tuple[Any, int]] = getattr(json.decoder.JSONDecoder(), "scan_once")


@functools.lru_cache(maxsize=64)
def _charset(content_type: str | None) -> str | None:
    """aiohttp's ``request.charset``: the Content-Type's charset parameter, read by the email package's parser."""
    if not content_type or "charset" not in content_type.lower():
        return None
    from email import policy
    from email.parser import HeaderParser

    message = HeaderParser(policy=policy.HTTP).parsestr(f"Content-Type: {content_type}")
    return dict(message.get_params(())[1:]).get("charset")


def dumps(value: Any) -> str:
    r"""JSON text as ComfyUI writes it (``json.dumps`` defaults: ``", "`` and ``": "``, ASCII escapes).

    >>> print(dumps({"prompt_id": "\u00e9", "number": 1.0, "node_errors": {}, "x": [None, True, float("nan")]}))
    {"prompt_id": "\u00e9", "number": 1.0, "node_errors": {}, "x": [null, true, NaN]}
    """
    return _PLAIN.dumps(value)


def accepted_json(prompt_id: str, number: int | float, node_errors: dict[str, Any]) -> bytes:
    r"""POST /prompt's 200 body, ``dumps({"prompt_id": ..., "number": ..., "node_errors": ...}).encode()``: written out
    for the usual answer (an int number, no node errors), a string format being a third of the encoder's cost.

    >>> accepted_json("\u00e9", 3, {}) == dumps({"prompt_id": "\u00e9", "number": 3, "node_errors": {}}).encode()
    True
    """
    if type(number) is not int or node_errors:
        return dumps({"prompt_id": prompt_id, "number": number, "node_errors": node_errors}).encode()
    return f'{{"prompt_id": {json.encoder.encode_basestring_ascii(prompt_id)}, "number": {number}, "node_errors": {{}}}}'.encode()


_C_ENCODER: Callable[..., Callable[[Any, int], Sequence[str]]] | None = getattr(json.encoder, "c_make_encoder", None)


class KeptEncoder:
    """``json.dumps(value, sort_keys=sort_keys)`` with the C encoder json.dumps makes on every call made once.

    json.dumps spends a few microseconds building that encoder (and a float formatter, and checks of its arguments)
    before encoding a small value, and every JSON answer, history entry and graph key comes through one of these.
    Its memo of the containers being encoded is kept too, so a circular value still fails as json.dumps fails.
    """

    def __init__(self, *, sort_keys: bool = False) -> None:
        self.sort_keys = sort_keys
        self._markers: dict[int, Any] = {}
        self._encode = None if _C_ENCODER is None else _C_ENCODER(
            self._markers, json.JSONEncoder().default, json.encoder.encode_basestring_ascii, None, ": ", ", ",
            sort_keys, False, True,
        )

    def dumps(self, value: Any) -> str:
        if self._encode is None:
            return json.dumps(value, sort_keys=self.sort_keys)
        try:
            return "".join(self._encode(value, 0))
        except BaseException:
            self._markers.clear()  # what a failed call left in the circular-reference memo (a successful one empties it)
            raise


_PLAIN = KeptEncoder()
