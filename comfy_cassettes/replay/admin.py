"""The control API under a reserved prefix: reset state and read the request journal, for tests in any language."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .engine import ReplayEngine


def admin_routes(engine: ReplayEngine, prefix: str) -> list[BaseRoute]:
    """Routes under ``prefix`` (``/__cassettes__``): reset, journal, state."""

    async def reset(request: Request) -> Response:
        await engine.reset()
        return JSONResponse({"reset": True})

    async def journal(request: Request) -> Response:
        method = request.query_params.get("method")
        path = request.query_params.get("path")
        entries = [
            e.as_dict()
            for e in engine.journal
            if (not method or e.method == method.upper()) and (not path or e.path == path or e.path == "/api" + path)
        ]
        return JSONResponse({"count": len(entries), "entries": entries, "errors": list(engine.journal.errors)})

    async def clear_journal(request: Request) -> Response:
        engine.journal.clear()
        return JSONResponse({"cleared": True})

    async def state(request: Request) -> Response:
        config = engine.config
        return JSONResponse(
            {
                "mode": "dynamic" if config.dynamic else "static",
                "timing": config.timing,
                "seed": config.seed,
                "cassettes": [str(c.path) for c in engine.cassettes],
                "jobs_recorded": len(engine.jobs),
                "queue_remaining": engine.queue_remaining(),
                "history": len(engine.history),
                "output_dir": str(engine.roots.output),
                "input_dir": str(engine.roots.input),
                "temp_dir": str(engine.roots.temp),
            }
        )

    return [
        Route(f"{prefix}/reset", reset, methods=["POST"]),
        Route(f"{prefix}/journal", journal, methods=["GET"]),
        Route(f"{prefix}/journal", clear_journal, methods=["DELETE"]),
        Route(f"{prefix}/state", state, methods=["GET"]),
    ]
