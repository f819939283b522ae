"""What the chatroom page reads: the catalog's chat models for its picker, with prices per million tokens."""

from __future__ import annotations

from billing.money import nanos_to_price_string
from routing.selectors import model_cheapest_endpoint, model_list, model_supported_parameters


def picker_models() -> list[dict]:
    """Every listed text model: id, name, prices ($ per million tokens, its cheapest endpoint's), what it reads."""
    rows = []
    for model in model_list():
        endpoint = model_cheapest_endpoint(model)
        if endpoint is None:
            continue
        inputs = set(model.input_modalities or [])
        rows.append(
            {
                "id": model.slug,
                "name": model.name,
                "prompt": nanos_to_price_string(endpoint.price_prompt),
                "completion": nanos_to_price_string(endpoint.price_completion),
                "context": model.context_length,
                "images": "image" in inputs,
                "files": "file" in inputs,
                "reasoning": "reasoning" in model_supported_parameters(model),
                "free": model.slug.endswith(":free"),
            }
        )
    rows.sort(key=lambda r: r["name"].lower())
    return rows
