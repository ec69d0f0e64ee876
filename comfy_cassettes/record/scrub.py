"""Removes secrets from a RawSession before it is templated: auth headers, API keys, user home paths.

Scrubbing happens on the raw session, in ``build_cassette`` (record/build.py), the one function every recording
source (live runner, proxy, HAR import, vcrpy persister) goes through, so nothing secret ever reaches the
templater, the blobs or the cassette file:

* headers such as ``Authorization``, ``Cookie``, ``Set-Cookie``, ``X-API-Key`` and ``Comfy-User`` (ComfyUI's
  multi-user id) are dropped, as is any header whose name names a credential (``X-Comfy-Api-Key``, ``X-Auth-Token``...);
* JSON members whose key names a secret (``api_key_comfy_org``, ``auth_token_comfy_org``, ``password``...)
  keep their key but get the value ``"<scrubbed>"``, in request and response bodies and WebSocket frames (not
  ``/object_info``'s hidden-input type names under those keys, such as ``"API_KEY_COMFY_ORG"``);
* every secret value found that way is also replaced wherever else it appears as text (URLs, headers, bodies,
  WebSocket frames), except the ``Comfy-User`` id (single-user ComfyUI sends ``default``, a common word);
* ``user:password@`` is taken out of URLs;
* user home folders (``/home/alice``, ``/Users/alice``, ``C:\\Users\\alice``, this machine's ``~``) become
  ``~``: ``/system_stats`` lists ComfyUI's ``argv`` and error tracebacks carry absolute paths.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..comfy.protocol import HIDDEN_INPUT_TYPES
from .session import HttpExchange, RawSession, WsConnection, WsFrame

SCRUBBED = "<scrubbed>"
DEFAULT_HEADERS = (
    "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key", "x-auth-token", "comfy-user",
)
# Dropped but not hunted elsewhere: who, not a credential; single-user ComfyUI sends "default", found all over /object_info.
_IDENTITY_HEADERS = ("comfy-user",)
# Header or JSON key names that hold credentials: x-api-key, X-Comfy-Api-Key, api_key_comfy_org, auth_token_comfy_org...
_SECRET_NAME = re.compile(r"(api[-_]?key|auth[-_]?token|access[-_]?token|secret|password|passwd|credential)", re.IGNORECASE)
_COOKIE_VALUE = re.compile(r"(?:^|;)\s*[^=;\s]+=([^;\s]{8,})")
_USERINFO = re.compile(r"^([a-z][a-z0-9+.-]*://)([^/@?#]*)@", re.IGNORECASE)
_HOME = re.compile(r"(?:/home/|/Users/)[^/\\\s\"':]+|[A-Za-z]:\\{1,2}Users\\{1,2}[^\\\s\"':]+")


@dataclass(frozen=True)
class Scrubber:
    """What to remove from a recording; the defaults cover ComfyUI's usual secrets.

    Usage::

        clean = Scrubber(headers=("X-Team-Token",)).scrub(session)
    """

    headers: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    homes: bool = True
    home: str = field(default_factory=lambda: str(Path.home()))

    def with_extra(self, headers: Iterable[str] = (), keys: Iterable[str] = ()) -> Scrubber:
        """A scrubber that also removes the given header and JSON key names."""
        return replace(self, headers=self.headers + tuple(headers), keys=self.keys + tuple(keys))

    def secret_header(self, name: str) -> bool:
        lowered = name.lower()
        return lowered in DEFAULT_HEADERS or lowered in {h.lower() for h in self.headers} or bool(_SECRET_NAME.search(lowered))

    def secret_key(self, name: str) -> bool:
        return name.lower() in {k.lower() for k in self.keys} or bool(_SECRET_NAME.search(name))

    def scrub_text(self, text: str) -> str:
        """One string kept beside a session (a server URL, a path): without ``user:password@`` and home folders."""
        return self._url(text, set())

    def scrub(self, session: RawSession) -> RawSession:
        """A copy of ``session`` without secrets (the original is left as it was)."""
        found: set[str] = set()
        exchanges = [self._exchange(x, found) for x in session.exchanges]
        sockets = [
            WsConnection(t=s.t, url=self._url(s.url, found), frames=[WsFrame(f.t, f.sent, self._payload(f.data, found)) for f in s.frames])
            for s in session.sockets
        ]
        # Second pass: a secret seen once (say in a header) must not survive anywhere else (say in a URL).
        values = sorted((v for v in found if len(v) >= 4), key=len, reverse=True)
        if values:
            exchanges = [self._replace_values(x, values) for x in exchanges]
            for socket in sockets:
                socket.url = _replace_all(socket.url, values)
                socket.frames = [
                    WsFrame(f.t, f.sent, _replace_all(f.data, values) if isinstance(f.data, str) else f.data) for f in socket.frames
                ]
        return RawSession(exchanges=exchanges, sockets=sockets, source=self._url(session.source, found), comment=session.comment)

    # ------------------------------------------------------------ pieces

    def _headers(self, items: list[tuple[str, str]], found: set[str]) -> list[tuple[str, str]]:
        kept = []
        for name, value in items:
            if self.secret_header(name):
                if name.lower() in _IDENTITY_HEADERS:
                    continue
                found.add(value)
                if name.lower() in ("cookie", "set-cookie"):
                    found.update(m.group(1) for m in _COOKIE_VALUE.finditer(value))
                elif len(value.split()[-1] if value.split() else "") >= 8:
                    found.add(value.split()[-1])  # the credential after a scheme such as "Bearer"
            else:
                kept.append((name, self._home_text(value)))
        return kept

    def _url(self, url: str, found: set[str]) -> str:
        """The URL without ``user:password@`` (httpx turns it into an Authorization header, dropped above)."""
        match = _USERINFO.match(url)
        if match is None:
            return self._home_text(url)
        _, _, password = match.group(2).partition(":")
        if len(password) >= 4:
            found.add(password)
        return self._home_text(match.group(1) + url[match.end() :])

    def _exchange(self, x: HttpExchange, found: set[str]) -> HttpExchange:
        return replace(
            x,
            url=self._url(x.url, found),
            request_headers=self._headers(x.request_headers, found),
            response_headers=self._headers(x.response_headers, found),
            request_body=self._body(x.request_body, found),
            response_body=self._body(x.response_body, found),
        )

    def _replace_values(self, x: HttpExchange, values: list[str]) -> HttpExchange:
        return replace(
            x,
            url=_replace_all(x.url, values),
            request_headers=[(k, _replace_all(v, values)) for k, v in x.request_headers],
            response_headers=[(k, _replace_all(v, values)) for k, v in x.response_headers],
            request_body=_replace_bytes(x.request_body, values),
            response_body=_replace_bytes(x.response_body, values),
        )

    def _payload(self, data: str | bytes, found: set[str]) -> str | bytes:
        if isinstance(data, bytes):
            return data  # binary frames are images (with their own JSON header, which holds no secrets)
        return self._text(data, found)

    def _body(self, body: bytes, found: set[str]) -> bytes:
        if not body or body[:1] not in (b"{", b"["):
            return body
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return body
        scrubbed = self._text(text, found)
        return body if scrubbed is text else scrubbed.encode("utf-8")

    def _text(self, text: str, found: set[str]) -> str:
        """A JSON text with secret members blanked and home paths shortened, in the sender's serialisation."""
        try:
            value = json.loads(text)
        except ValueError:
            return self._home_text(text)
        cleaned = self._value(value, found)
        if cleaned == value:
            return text
        compact = text == json.dumps(value, separators=(",", ":"))
        return json.dumps(cleaned, separators=(",", ":") if compact else None)

    def _value(self, value: Any, found: set[str]) -> Any:
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for key, item in value.items():
                if isinstance(key, str) and self.secret_key(key) and isinstance(item, str) and item and item not in HIDDEN_INPUT_TYPES:
                    found.add(item)
                    out[key] = SCRUBBED
                else:
                    out[key] = self._value(item, found)
            return out
        if isinstance(value, list):
            return [self._value(item, found) for item in value]
        if isinstance(value, str):
            return self._home_text(value)
        return value

    def _home_text(self, text: str) -> str:
        if not self.homes or ("/" not in text and "\\" not in text):
            return text
        if self.home not in ("", "/") and self.home in text:
            text = text.replace(self.home, "~")
        return _HOME.sub("~", text)


def _replace_all(text: str, values: list[str]) -> str:
    for value in values:
        if value in text:
            text = text.replace(value, SCRUBBED)
    return text


def _replace_bytes(body: bytes, values: list[str]) -> bytes:
    """Replace secrets in text bodies; binary bodies (images) would be corrupted by it and hold none."""
    if not body:
        return body
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return body
    replaced = _replace_all(text, values)
    return body if replaced is text else replaced.encode("utf-8")
