"""Placeholders for the volatile values of a ComfyUI session: find them when recording, fill them in on replay.

A placeholder is ``{{name}}`` with a name from a closed grammar (no expressions, nothing evaluated: cassettes
are shared files). Names:

    prompt_id, client_id, number, now_ms, http_date     the current job's values
    out.<node>.<i>.filename / out.<node>.<i>.subfolder  the job's i-th image of output node <node>
    job.<k>.prompt_id / job.<k>.number                  another job of the same cassette (queue listings)
    job.<k>.out.<node>.<i>.filename / ...subfolder      another job's images (history listings)
    sid.<k>                                             a WebSocket sid that is not the job's client
    lbrace                                              a literal ``{{``: recorded text that would read as a name

``number`` and ``now_ms`` are integers: inside a JSON structure they are stored as the string ``"{{number}}"``
and rendered back to an int; inside JSON text they appear bare (``"number": {{number}}``).

Only ``{{...}}`` starting with one of the grammar's roots (:data:`ROOTS`) is a placeholder; any other (a prompt
such as ``"a {{style}} portrait"``, a templating node's input) is recorded data and stays literal text. Inside
the namespace the grammar is closed: ``{{prompt_idd}}`` or ``{{out.2.filename}}`` is an error, not text.
Recording escapes recorded text that collides with the namespace (``{{number_of_steps}}`` is stored as
``{{lbrace}}number_of_steps}}``), so no recorded value can make a cassette invalid.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import quote, unquote

from ..comfy.events import WsEvent

ROOTS = ("prompt_id", "client_id", "number", "now_ms", "http_date", "out", "job", "sid", "lbrace")
LBRACE = "lbrace"
# A name in our namespace, valid or not: validation rejects the invalid ones, rendering fills the valid ones.
PLACEHOLDER = re.compile(r"\{\{((?:" + "|".join(ROOTS) + r")[^{}]*)\}\}")
# A node id is any string ComfyUI accepts as a prompt key, dots included (ComfyScript names nodes "SaveImage.0").
_NAME = re.compile(
    r"^(?:prompt_id|client_id|number|now_ms|http_date"
    r"|out\.[^{}]+\.\d+\.(?:filename|subfolder)"
    r"|job\.\d+\.(?:prompt_id|number|out\.[^{}]+\.\d+\.(?:filename|subfolder))"
    r"|sid\.\d+|lbrace)$"
)
_QUOTED = re.compile('"(' + PLACEHOLDER.pattern + ')"')
INT_NAMES = re.compile(r"^(?:number|now_ms|job\.\d+\.number)$")

Bindings = Mapping[str, "str | int | float"]


def is_valid_name(name: str) -> bool:
    """True when ``name`` belongs to the closed placeholder grammar."""
    return bool(_NAME.match(name))


def placeholder(name: str) -> str:
    """The placeholder text for ``name``."""
    if not is_valid_name(name):
        raise ValueError(f"not a placeholder name: {name!r}")
    return "{{" + name + "}}"


def names_in(value: Any) -> Iterator[str]:
    """Every name in our namespace used anywhere inside a string or a JSON-like structure (invalid ones too)."""
    if isinstance(value, str):
        for match in PLACEHOLDER.finditer(value):
            yield match.group(1)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from names_in(key)
            yield from names_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from names_in(item)


def escape_literal(text: str) -> str:
    """Recorded text made safe to store: each ``{{`` that would open one of our names becomes ``{{lbrace}}``."""
    if "{{" not in text:
        return text
    return PLACEHOLDER.sub(lambda m: "{{" + LBRACE + "}}" + m.group(0)[2:], text)


def escape_literals(value: Any) -> Any:
    """:func:`escape_literal` over a JSON-like structure (keys included)."""
    if isinstance(value, str):
        return escape_literal(value)
    if isinstance(value, dict):
        return {escape_literal(k) if isinstance(k, str) else k: escape_literals(v) for k, v in value.items()}
    if isinstance(value, list):
        return [escape_literals(item) for item in value]
    return value


def json_escape(text: str) -> str:
    """Escape a value for insertion between the quotes of a JSON string."""
    return json.dumps(text)[1:-1]


def url_escape(text: str) -> str:
    """Escape a value for insertion into a URL query or path."""
    return quote(text, safe="")


def render_text(text: str, bindings: Bindings, escape: Callable[[str], str] | None = None) -> str:
    """Fill every placeholder of ``text``; strings pass through ``escape`` (JSON or URL), numbers do not."""

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == LBRACE:
            return "{{"
        if name not in bindings:
            return match.group(0)
        value = bindings[name]
        if isinstance(value, str):
            return escape(value) if escape else value
        return json.dumps(value)

    if "{{" not in text:
        return text
    return PLACEHOLDER.sub(fill, text)


def render_value(value: Any, bindings: Bindings) -> Any:
    """Fill placeholders in a JSON-like structure; a string that is exactly one placeholder takes its value's type."""
    if isinstance(value, str):
        if "{{" not in value:
            return value
        whole = PLACEHOLDER.fullmatch(value)
        if whole and whole.group(1) in bindings:
            return bindings[whole.group(1)]
        return render_text(value, bindings)
    if isinstance(value, dict):
        return {render_text(k, bindings) if isinstance(k, str) else k: render_value(v, bindings) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(item, bindings) for item in value]
    return value


Renderer = Callable[[Bindings], Any]


def event_renderer(event: WsEvent) -> Renderer:
    """A recorded event's ``data`` compiled (:func:`compile_value`) on first use and kept on the event: a recorded
    job's messages are rendered again for every replay of it."""
    renderer: Renderer | None = event.__dict__.get("_renderer")
    if renderer is None:
        renderer = event.__dict__["_renderer"] = compile_value(event.data)
    return renderer


def compile_value(value: Any) -> Renderer:
    """:func:`render_value` for a structure rendered again and again (a recorded job's messages): the walk over
    ``value`` is done once. Each call returns fresh dicts and lists (a caller may change what it gets); strings
    and numbers without placeholders are shared."""
    if isinstance(value, dict):
        if any(isinstance(k, str) and "{{" in k for k in value):
            items = [(k, compile_value(v)) for k, v in value.items()]
            return lambda b: {render_text(k, b) if isinstance(k, str) else k: f(b) for k, f in items}
        # A value that is one placeholder is looked up in place (most of a message's: its prompt_id, its timestamp):
        # a call per value costs more than the lookup.
        named = [(k, whole.group(1), v) for k, v in value.items() if isinstance(v, str) and (whole := PLACEHOLDER.fullmatch(v))]
        dynamic = [(k, compile_value(v)) for k, v in value.items() if not _constant_leaf(v) and not (isinstance(v, str) and PLACEHOLDER.fullmatch(v))]
        if not dynamic and not named:
            return lambda b: value.copy()
        template = dict(value)  # constant values in place, in order; the others are overwritten on every call

        def render_dict(b: Bindings) -> dict[Any, Any]:
            out = template.copy()
            for key, name, text in named:
                out[key] = b[name] if name in b else render_text(text, b)
            for key, render in dynamic:
                out[key] = render(b)
            return out

        return render_dict
    if isinstance(value, list):
        if all(_constant_leaf(item) for item in value):
            return lambda b: value.copy()
        renders = [compile_value(item) for item in value]
        return lambda b: [render(b) for render in renders]
    if isinstance(value, str) and "{{" in value:
        whole = PLACEHOLDER.fullmatch(value)
        if whole is not None:
            name = whole.group(1)
            return lambda b: b[name] if name in b else render_text(value, b)
        return lambda b: render_text(value, b)
    return lambda b: value


def _constant_leaf(value: Any) -> bool:
    return not isinstance(value, (dict, list)) and not (isinstance(value, str) and "{{" in value)


def dumps_templated(value: Any, *, compact: bool = False) -> str:
    """Serialise a templated structure like ComfyUI does (``json.dumps`` defaults), unquoting integer placeholders."""
    text = json.dumps(value, separators=(",", ":") if compact else None)

    def unquote(match: re.Match[str]) -> str:
        return match.group(1) if INT_NAMES.match(match.group(2)) else match.group(0)

    return _QUOTED.sub(unquote, text)


def parse_templated(text: str) -> Any:
    """A templated JSON text parsed, integer placeholders read as 0; None when it is not JSON."""
    filled = PLACEHOLDER.sub(lambda m: "0" if INT_NAMES.match(m.group(1)) else m.group(0), text)
    try:
        return json.loads(filled)
    except ValueError:
        return None


class Templater:
    """Replaces known volatile strings by placeholders, longest first, in text and in structures.

    A value added ``whole`` (a prompt_id, a client id) is an identifier: it is replaced only where a string is
    exactly that value (a JSON string or key, a URL path segment, a query value), never inside another string (a
    client's prompt_id ``42`` leaves the filename prefix ``n42`` as it is). Other values (output file names) are
    replaced wherever they occur, since ComfyUI writes them inside longer strings (``name.png [output]``).
    """

    def __init__(self) -> None:
        self._strings: dict[str, str] = {}
        self._whole: dict[str, str] = {}
        self._pattern: re.Pattern[str] | None = None

    def add(self, value: str, name: str, *, whole: bool = False) -> None:
        """Map ``value`` to ``{{name}}``: every occurrence, or with ``whole`` only a string that is exactly
        ``value`` (the first mapping of a value wins)."""
        if not value or value in self._strings or value in self._whole:
            return
        if whole:
            self._whole[value] = placeholder(name)
        else:
            self._strings[value] = placeholder(name)
            self._pattern = None

    def name_of(self, value: str) -> str | None:
        """The placeholder that replaces exactly ``value``, if any."""
        return self._whole.get(value) or self._strings.get(value)

    def text(self, text: str) -> str:
        """Replace every known value inside recorded ``text`` (after escaping what collides with our names)."""
        if text in self._whole:
            return self._whole[text]
        text = escape_literal(text)
        if not self._strings:
            return text
        if self._pattern is None:
            keys = sorted(self._strings, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(k) for k in keys))
        return self._pattern.sub(lambda m: self._strings[m.group(0)], text)

    def path(self, path: str) -> str:
        """A URL path with each segment replaced as :meth:`text` replaces a string (``/history/{{prompt_id}}``)."""
        return "/".join(self._whole.get(unquote(segment)) or self.text(segment) for segment in path.split("/"))

    def value(self, value: Any) -> Any:
        """Replace known values in a JSON-like structure (keys included)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(k) if isinstance(k, str) else k: self.value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(item) for item in value]
        return value
