"""Request bodies of the Actions wrappers, written for a model to read.

Each model's field descriptions and `example` become the Actions schema (schema.py), so
what the GPT reads and what the relay validates are one definition.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

_IDS = r"^[A-Za-z0-9_.:\-]{1,128}$"


def _example(value: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"example": value})


class AskBody(BaseModel):
    model_config = _example(
        {
            "input": "Summarise the attached policy in three bullet points.",
            "vector_store_ids": ["vs_abc123"],
            "web_search": False,
        }
    )
    input: str = Field(
        min_length=1, description="The question or task, with any context the model needs."
    )
    model: str | None = Field(None, description="OpenAI model id; the relay's default if omitted.")
    instructions: str | None = Field(None, description="System-style guidance for this answer.")
    vector_store_ids: list[str] | None = Field(
        None,
        max_length=2,
        description="Vector stores to search with file_search (ids start with vs_).",
    )
    web_search: bool = Field(False, description="Let the model search the web.")
    previous_response_id: str | None = Field(
        None, pattern=_IDS, description="Continue from an earlier answer (its response_id)."
    )
    max_output_tokens: int | None = Field(None, ge=16, description="Cap on the answer's length.")


class ResponseRef(BaseModel):
    model_config = _example({"response_id": "resp_abc123"})
    response_id: str = Field(pattern=_IDS, description="The response_id askModel returned.")


class EmbedBody(BaseModel):
    model_config = _example({"input": ["first text", "second text"]})
    input: str | list[str] = Field(description="A text, or a list of up to 16 texts.")
    model: str = Field("text-embedding-3-small", description="Embedding model id.")
    dimensions: int | None = Field(None, ge=1, le=3072, description="Shorter vectors if set.")


class ImageBody(BaseModel):
    model_config = _example({"prompt": "A watercolour lighthouse at dawn", "size": "1024x1024"})
    prompt: str = Field(min_length=1, description="What the image should show.")
    model: str = Field("gpt-image-1", description="Image model id.")
    size: str | None = Field(None, description="For example 1024x1024, 1536x1024 or auto.")
    quality: str | None = Field(None, description="low, medium, high or auto.")
    n: int = Field(1, ge=1, le=4, description="How many images.")


class VectorStoreBody(BaseModel):
    model_config = _example({"name": "Team handbook"})
    name: str = Field(min_length=1, max_length=256, description="A name people will recognise.")
    file_ids: list[str] | None = Field(None, description="OpenAI file ids to add right away.")
    expires_after_days: int | None = Field(
        None, ge=1, le=365, description="Delete the store after this many idle days."
    )


class VectorStoreRef(BaseModel):
    model_config = _example({"vector_store_id": "vs_abc123"})
    vector_store_id: str = Field(pattern=_IDS, description="The vector store's id (vs_...).")


class SearchBody(BaseModel):
    model_config = _example({"vector_store_id": "vs_abc123", "query": "holiday allowance"})
    vector_store_id: str = Field(pattern=_IDS, description="The vector store to search.")
    query: str = Field(min_length=1, description="What to look for, in plain words.")
    max_num_results: int = Field(10, ge=1, le=50, description="How many passages to return.")


class AddFilesBody(BaseModel):
    model_config = _example({"vector_store_id": "vs_abc123", "file_ids": ["file-abc123"]})
    vector_store_id: str = Field(pattern=_IDS, description="The vector store to add files to.")
    file_ids: list[str] = Field(min_length=1, max_length=100, description="OpenAI file ids.")


class UploadBody(BaseModel):
    model_config = _example(
        {
            "openaiFileIdRefs": [
                {
                    "name": "handbook.pdf",
                    "id": "file-abc123",
                    "mime_type": "application/pdf",
                    "download_link": "https://files.oaiusercontent.com/file-abc123",
                }
            ],
            "purpose": "assistants",
        }
    )
    openaiFileIdRefs: list[Any] = Field(
        max_length=10,
        description=(
            "The files the user attached in this chat (up to 10), any type. ChatGPT fills "
            "this in; pass every file the user wants stored."
        ),
        json_schema_extra={"items": {"type": "string"}},
    )
    purpose: Literal["assistants", "user_data", "batch", "vision"] = Field(
        "assistants",
        description="assistants for search and vector stores, batch for batch input (.jsonl).",
    )
    vector_store_id: str | None = Field(
        None, pattern=_IDS, description="Also add the files to this vector store."
    )


class FileRefBody(BaseModel):
    model_config = _example({"file_id": "file-abc123"})
    file_id: str = Field(pattern=_IDS, description="The OpenAI file id (file-...).")


class BatchRequest(BaseModel):
    custom_id: str = Field(max_length=64, description="Your id for this line.")
    body: dict[str, Any] = Field(
        description="The request body for the endpoint, model included (for /v1/responses: "
        'model and input, e.g. {"model": "gpt-5-mini", "input": "Say hi"}).'
    )


class BatchBody(BaseModel):
    # endpoint, and one of requests and input_file_id: the schema says so, not only the 400.
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "endpoint": "/v1/responses",
                "requests": [
                    {"custom_id": "q1", "body": {"model": "gpt-5-mini", "input": "Say hi"}},
                ],
            },
            "anyOf": [{"required": ["requests"]}, {"required": ["input_file_id"]}],
        }
    )
    endpoint: Literal[
        "/v1/responses", "/v1/chat/completions", "/v1/embeddings", "/v1/moderations"
    ] = Field(description="Which API every request in the batch calls.")
    requests: list[BatchRequest] | None = Field(
        None,
        max_length=500,
        description="The requests (give these or input_file_id); the relay writes the .jsonl.",
    )
    input_file_id: str | None = Field(
        None,
        pattern=_IDS,
        description="Instead of requests: an uploaded .jsonl file (purpose batch).",
    )
    metadata: dict[str, str] | None = Field(None, description="Up to 16 labels.")


class BatchRef(BaseModel):
    model_config = _example({"batch_id": "batch_abc123"})
    batch_id: str = Field(pattern=_IDS, description="The batch id (batch_...).")


class ProxyBody(BaseModel):
    model_config = _example({"method": "GET", "path": "/v1/models/gpt-5-mini"})
    method: Literal["GET", "POST", "DELETE"] = Field(description="HTTP method.")
    path: str = Field(
        min_length=1,
        max_length=512,
        description="An OpenAI API path starting with /v1/, ids filled in (no {placeholders}), "
        "without query or host; query parameters go in query.",
        examples=["/v1/models/gpt-5-mini"],
    )
    query: dict[str, Any] | None = Field(None, description="Query parameters.")
    body: dict[str, Any] | None = Field(None, description="JSON body (no streaming).")
