"""GET /v1/models and /v1/models/{id}."""

from __future__ import annotations

from aiohttp import web

from .errors import ApiError
from .wire import json_reply

MODELS = [
    ("gpt-5", 1754425777, "system"),
    ("gpt-5-mini", 1754425928, "system"),
    ("gpt-4.1", 1744316542, "system"),
    ("gpt-4o-mini", 1721172741, "system"),
    ("o4-mini", 1744225351, "system"),
    ("text-embedding-3-small", 1705948997, "system"),
    ("text-embedding-3-large", 1705953180, "system"),
    ("omni-moderation-latest", 1731689265, "system"),
    ("whisper-1", 1677532384, "openai-internal"),
    ("gpt-4o-transcribe", 1742068463, "system"),
    ("tts-1", 1681940951, "openai-internal"),
    ("gpt-4o-mini-tts", 1742403959, "system"),
    ("gpt-image-1", 1745517030, "system"),
    ("dall-e-3", 1698785189, "system"),
]

routes = web.RouteTableDef()


def model_object(model_id: str, created: int, owner: str) -> dict[str, object]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": owner}


@routes.get("/v1/models")
async def list_models(request: web.Request) -> web.StreamResponse:
    return json_reply({"object": "list", "data": [model_object(*model) for model in MODELS]})


@routes.get("/v1/models/{model}")
async def get_model(request: web.Request) -> web.StreamResponse:
    wanted = request.match_info["model"]
    for model in MODELS:
        if model[0] == wanted:
            return json_reply(model_object(*model))
    raise ApiError(
        404,
        f"The model '{wanted}' does not exist",
        param="model",
        code="model_not_found",
    )
