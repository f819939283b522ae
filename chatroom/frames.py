"""The chatroom socket's frames from the page, parsed once into typed objects (bad ones are a ``FrameError``).

From the page (JSON text frames):
  {"type": "send", "columns": [{"id", "model", "messages", "temperature"?, "max_tokens"?, "reasoning"?}]}
  {"type": "stop", "column"?}          one column, or every running one
  {"type": "ack", "frames": n}        how many server frames the page has handled (back-pressure)

To the page:
  {"type": "ready", "max_models", "max_frame_bytes", "window"}
  {"type": "started", "column", "generation_id"}
  {"type": "chunks", "column", "data": [chat.completion.chunk, ...]}   the API's own stream chunks
  {"type": "error", "column"?, "error": {"code", "message", "metadata"?}}
  {"type": "done", "column", "generation_id", "model", "provider", "usage", "cost_nanos", "cost", "stopped"}
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson

COLUMN_ID = re.compile(r"[A-Za-z0-9_-]{1,40}")
MAX_MODEL_CHARS = 200


class FrameError(Exception):
    """A frame the consumer refuses: answered with this message, nothing is sent upstream."""

    def __init__(self, message: str, *, status: int = 400, column: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.column = column


@dataclass(frozen=True, slots=True)
class Column:
    id: str
    model: str
    messages: list
    temperature: float | None = None
    max_tokens: int | None = None
    reasoning: bool = False

    def body(self) -> dict:
        """The chat-completions body this column sends (through the API's own parser and gateway)."""
        body: dict = {"model": self.model, "messages": self.messages, "stream": True}
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        if self.reasoning:
            body["reasoning"] = {"enabled": True}
        return body


@dataclass(frozen=True, slots=True)
class Send:
    columns: tuple[Column, ...]


@dataclass(frozen=True, slots=True)
class Stop:
    column: str | None


@dataclass(frozen=True, slots=True)
class Ack:
    frames: int


def frame_parse(text: str | None, *, max_bytes: int, max_models: int) -> Send | Stop | Ack:
    if text is None:
        raise FrameError("Frames must be JSON text, not binary")
    if len(text) > max_bytes or len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise FrameError(
            f"The message is too large (the limit is {max_bytes // (1024 * 1024)} MB with its attachments); "
            "nothing was sent",
            status=413,
        )
    try:
        frame = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise FrameError("Malformed frame: not JSON") from None
    if not isinstance(frame, dict):
        raise FrameError("Malformed frame: expected a JSON object")
    kind = frame.get("type")
    if kind == "ack":
        frames = frame.get("frames")
        if not isinstance(frames, int) or isinstance(frames, bool) or frames < 0:
            raise FrameError("Malformed ack: 'frames' must be a non-negative integer")
        return Ack(frames)
    if kind == "stop":
        column = frame.get("column")
        if column is not None and (not isinstance(column, str) or not COLUMN_ID.fullmatch(column)):
            raise FrameError("Malformed stop: 'column' must be a column id")
        return Stop(column)
    if kind == "send":
        return Send(_columns(frame.get("columns"), max_models))
    raise FrameError("Malformed frame: 'type' must be send, stop or ack")


def _columns(raw, max_models: int) -> tuple[Column, ...]:
    if not isinstance(raw, list) or not raw:
        raise FrameError("Pick at least one model")
    if len(raw) > max_models:
        raise FrameError(f"At most {max_models} models can answer side by side ({len(raw)} were picked)")
    columns = []
    for item in raw:
        if not isinstance(item, dict):
            raise FrameError("Malformed send: each column must be an object")
        column_id = item.get("id")
        if not isinstance(column_id, str) or not COLUMN_ID.fullmatch(column_id):
            raise FrameError("Malformed send: a column id must be 1-40 letters, digits, '-' or '_'")
        model = item.get("model")
        if not isinstance(model, str) or not model.strip() or len(model) > MAX_MODEL_CHARS or "\x00" in model:
            raise FrameError("Pick a model for every column", column=column_id)
        messages = item.get("messages")
        if not isinstance(messages, list) or not messages:
            raise FrameError("Write a message first", column=column_id)
        columns.append(
            Column(
                id=column_id,
                model=model.strip(),
                messages=messages,
                temperature=_number(item.get("temperature"), "temperature", 0, 2, column_id),
                max_tokens=_integer(item.get("max_tokens"), "max_tokens", 1, 1_000_000, column_id),
                reasoning=item.get("reasoning") is True,
            )
        )
    if len({c.id for c in columns}) != len(columns):
        raise FrameError("Malformed send: column ids must be different")
    return tuple(columns)


def _number(value, name: str, low: float, high: float, column: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise FrameError(f"{name} must be a number from {low} to {high}", column=column)
    return value


def _integer(value, name: str, low: int, high: int, column: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise FrameError(f"{name} must be a whole number from {low} to {high}", column=column)
    return value
