"""OpenAI's ``POST /v1/embeddings``: deterministic vectors with honest token counts.

Each input (a string, or a list of token ids) gets a unit vector drawn from a generator seeded by
the model name and the input, so the same input always embeds the same way, and different inputs
differently. ``prompt_tokens`` counts with the simulator's tokenizer (a string) or one per id (a
token array). ``dimensions`` shortens the vector (as OpenAI's ``text-embedding-3`` models do);
``encoding_format: "base64"`` answers little-endian float32 bytes, base64-encoded, like OpenAI.
"""

from __future__ import annotations

import base64
import math
import random
import struct
from dataclasses import dataclass
from typing import Any

import orjson

from .protocol import RequestError
from .text import seed_for
from .tokens import count_tokens

DEFAULT_DIMENSIONS = 1536
LARGE_DIMENSIONS = 3072  # an upstream model named "...large..."
MAX_DIMENSIONS = 8192
MAX_INPUTS = 2048


@dataclass(slots=True)
class EmbeddingJob:
    model: str
    inputs: list[str | list[int]]
    dimensions: int
    base64: bool

    @property
    def prompt_tokens(self) -> int:
        return sum(count_tokens(item) if isinstance(item, str) else len(item) for item in self.inputs)


def _inputs(raw: Any) -> list[str | list[int]]:
    if isinstance(raw, str):
        return [raw]
    if not isinstance(raw, list) or not raw:
        raise RequestError("'input' must be a string, an array of strings or an array of token arrays", "input")
    if all(isinstance(x, int) and not isinstance(x, bool) for x in raw):
        return [list(raw)]
    out: list[str | list[int]] = []
    for item in raw:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, list) and item and all(isinstance(x, int) and not isinstance(x, bool) for x in item):
            out.append(item)
        else:
            raise RequestError("each input must be a string or a non-empty array of token ids", "input")
    if len(out) > MAX_INPUTS:
        raise RequestError(f"at most {MAX_INPUTS} inputs per request", "input")
    return out


def parse(body: Any) -> EmbeddingJob:
    if not isinstance(body, dict):
        raise RequestError("request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("'model' is required", "model")
    inputs = _inputs(body.get("input"))
    default = LARGE_DIMENSIONS if "large" in model else DEFAULT_DIMENSIONS
    dimensions = body.get("dimensions", default)
    if dimensions is None:
        dimensions = default
    if not isinstance(dimensions, int) or isinstance(dimensions, bool) or not 1 <= dimensions <= MAX_DIMENSIONS:
        raise RequestError(f"'dimensions' must be an integer between 1 and {MAX_DIMENSIONS}", "dimensions")
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise RequestError("'encoding_format' must be 'float' or 'base64'", "encoding_format")
    return EmbeddingJob(model=model, inputs=inputs, dimensions=dimensions, base64=encoding == "base64")


def vector(model: str, item: str | list[int], dimensions: int) -> list[float]:
    """The unit vector of one input (the same input, model and size always give the same vector)."""
    key = item if isinstance(item, str) else ",".join(map(str, item))
    rng = random.Random(seed_for(model, key))
    values = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [round(v / norm, 7) for v in values]


def body(job: EmbeddingJob) -> bytes:
    data = []
    for index, item in enumerate(job.inputs):
        values = vector(job.model, item, job.dimensions)
        embedding: list[float] | str = values
        if job.base64:
            embedding = base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = job.prompt_tokens
    return orjson.dumps(
        {
            "object": "list",
            "data": data,
            "model": job.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )
