"""ComfyUI's /ws: a socket registered with the engine, its messages read, its faults (cuts, closes) applied."""

from __future__ import annotations

from starlette.websockets import WebSocket, WebSocketDisconnect

from .answers import engine_of, query_of


async def websocket(ws: WebSocket) -> None:
    engine = engine_of(ws)
    await ws.accept()
    # The upgrade is a GET answered with 101: journaled like one, so tests can assert a client connected.
    client_address = ws.scope.get("client") or ("", 0)
    engine.journal.add("GET", ws.url.path, ws.scope.get("query_string", b"").decode("latin-1"), b"", 101, matched="websocket",
                       client=f"{client_address[0]}:{client_address[1]}")

    async def send(payload: str | bytes) -> None:
        if isinstance(payload, bytes):
            await ws.send_bytes(payload)
        else:
            await ws.send_text(payload)

    async def close(code: int | None) -> None:
        # No code: cut the TCP connection like a network failure (the client sees 1006); else a close frame.
        listener = engine.faults.listener
        if code is None and listener is not None and listener.drop(ws.scope.get("client")):
            return
        await ws.close(code or 1011)

    client = None
    try:
        client = await engine.connect(query_of(ws).get("clientId"), send, close)
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            if message.get("text") is not None:
                await engine.on_message(client, message["text"])
    except WebSocketDisconnect:
        pass
    finally:
        if client is not None:
            engine.disconnect(client)
