"""ComfyUI's informational routes: features, system stats, object_info, models, embeddings, node
replacements and global subgraphs, from the catalogue or the recordings."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ...comfy.nodes import NODE_REPLACEMENTS
from ..sim.engine import Reply
from .answers import Handler, engine_of, json_text, one_segment, recorded, recorded_or, reply


async def get_features(request: Request) -> Response:
    engine = engine_of(request)
    if not engine.catalogue.as_recorded("/features"):
        return reply(Reply.json(engine.features))
    return recorded_or(request, lambda: Reply.json(engine.features))


async def get_system_stats(request: Request) -> Response:
    engine = engine_of(request)
    recorded_stats = engine.catalogue.recorded_json("/system_stats")
    if engine.catalogue.as_recorded("/system_stats") or not isinstance(recorded_stats, dict):
        return await recorded(request)
    return reply(Reply.json(engine.profile.stats(recorded_stats)))


async def get_object_info(request: Request) -> Response:
    engine = engine_of(request)
    catalogue = engine.catalogue.object_info()
    if catalogue is None:
        return await recorded(request)
    return json_text(engine.catalogue.object_info_text(catalogue))


async def get_object_info_class(request: Request) -> Response:
    engine = engine_of(request)
    catalogue = engine.catalogue.object_info()
    name = one_segment(request, "node_class", "object_info")
    if catalogue is None or name is None:
        return await recorded(request)
    return reply(Reply.json(engine.catalogue.live_object_info({name: catalogue[name]}) if name in catalogue else {}))


async def get_models(request: Request) -> Response:
    engine = engine_of(request)
    return reply(Reply.json(engine.catalogue.model_folders()))


async def get_models_folder(request: Request) -> Response:
    engine = engine_of(request)
    files = engine.catalogue.model_files(request.path_params["folder"])
    return reply(Reply.json(files)) if files is not None else Response(status_code=404)


async def get_embeddings(request: Request) -> Response:
    engine = engine_of(request)
    return reply(Reply.json(engine.catalogue.embeddings()))


async def get_node_replacements(request: Request) -> Response:
    return reply(Reply.json(NODE_REPLACEMENTS))


# app/subgraph_manager.py lists the blueprints folder of the ComfyUI checkout and custom_nodes/*/subgraphs; the
# replay has neither, so it answers as a ComfyUI without them: no entries, and null for any id.
async def get_global_subgraphs(request: Request) -> Response:
    return reply(Reply.json({}))


async def get_global_subgraph(request: Request) -> Response:
    return reply(Reply.json(None))


# Keyed by the functions' own names: comfy/routes.py names each route's handler.
HANDLERS: dict[str, Handler] = {fn.__name__: fn for fn in (
    get_features, get_system_stats, get_object_info, get_object_info_class, get_models, get_models_folder,
    get_embeddings, get_node_replacements, get_global_subgraphs, get_global_subgraph,
)}
