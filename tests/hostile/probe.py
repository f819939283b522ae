"""Throw hostile inputs at every route of a running platform and list the answers that are 5xx.

``ROUTES`` is the list of what to probe: add a row when you add a page or an endpoint. A route
names its methods, who calls it (``auth``: "none", "key", "management" or "session"), and, for
writes, a valid-looking JSON or form body whose fields are then replaced one by one with hostile
values. ``probe(server_url, identities)`` sends every (route, hostile input) pair over real HTTP and
returns the failures: any 5xx, any 413/400-class answer of an API route that is not in the
OpenRouter envelope, and any answer that does not come back at all.

The hostile classes (issue 7 §2): decimal overflow and non-finite amounts, wrong types nested in
valid objects, non-ASCII and 20-digit query integers, JSON nested 100,000 deep, JSON nested deeper
than the serializer writes back, bodies over the limit, lone surrogates, non-UTF-8 bodies with
signature headers, and absurd webhook timestamps.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import quote

import httpx


@dataclass(frozen=True)
class Route:
    path: str
    methods: tuple[str, ...] = ("GET",)
    auth: str = "none"  # none | key | management | session
    api: bool = True  # answers in the OpenRouter envelope
    body: dict = field(default_factory=dict)  # a plausible body for writes; its fields are fuzzed
    form: bool = False  # the body is form-encoded (pages)
    query: tuple[str, ...] = ()  # query parameters it reads
    envelope: str = "openrouter"  # the API's error envelope: "openrouter" or "anthropic" (/messages)


HOSTILE_NUMBERS: tuple[object, ...] = ("1e999999", "-1e999999", "NaN", "Infinity", "-Infinity", "sNaN", "1e-999999")
HOSTILE_JSON_NUMBERS = ("1e999", "-1e999", "1" * 400, "-" + "9" * 30)  # raw JSON number text
HOSTILE_VALUES: tuple[object, ...] = (
    *HOSTILE_NUMBERS,
    None,
    [],
    [[]],
    {},
    {"a": {}},
    5,
    -1,
    2**70,
    True,
    "",
    "\ud800",
    "x" * 10_000,
)
HOSTILE_QUERY = (
    "²",
    "٣",
    "99999999999999999999",
    "-99999999999999999999",
    "1e999999",
    "NaN",
    "-1",
    "%ED%A0%80",
    "%FF%FE",
    "x" * 3000,
)
COMMON_QUERY = ("offset", "limit", "before", "date", "id", "amount", "page", "q")


# One model of each dialect the gateway translates to (OpenAI, Anthropic Messages, Gemini).
CHAT_MODELS = ("openai/gpt-4o-mini", "anthropic/claude-3.5-haiku", "google/gemini-2.0-flash-001")


def chat_body(model: str) -> dict:
    """A valid chat request using every nested structure the parser and the adapters read."""
    tool = {"type": "function", "function": {"name": "lookup", "description": "d",
                                             "parameters": {"type": "object", "properties": {}}}}
    return {
        "model": model,
        "max_tokens": 4,
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi"},
                                         {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
            {"role": "assistant", "content": None,
             "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "42"},
        ],
        "tools": [tool],
        "tool_choice": {"type": "function", "function": {"name": "lookup"}},
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
        "reasoning": {"effort": "low"},
        "provider": {"quantizations": ["fp8", "bf16", "fp16", "unknown"], "max_price": {"prompt": 100, "completion": 100},
                     "sort": "price", "only": ["openai", "anthropic", "google-vertex", "google-ai-studio"]},
        "stop": ["\n\n"],
    }


def responses_body(model: str) -> dict:
    """A valid Responses request using every nested structure its translation reads (as Codex sends them)."""
    return {
        "model": model,
        "max_output_tokens": 64,
        "instructions": "be brief",
        "input": [
            {"type": "message", "id": "msg_1", "role": "developer", "content": [{"type": "input_text", "text": "x"}]},
            {"role": "user", "content": [{"type": "input_text", "text": "hi"},
                                         {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="}]},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "thinking"}]},
            {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "lookup", "arguments": "{}",
             "status": "completed"},
            {"type": "function_call_output", "id": "fco_1", "call_id": "call_1", "output": "42"},
            {"type": "custom_tool_call", "call_id": "call_2", "name": "apply_patch", "input": "*** Begin Patch"},
            {"type": "custom_tool_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "ok"}]},
        ],
        "tools": [
            {"type": "function", "name": "lookup", "description": "d", "parameters": {"type": "object", "properties": {}},
             "strict": False},
            {"type": "custom", "name": "apply_patch", "format": {"type": "grammar", "syntax": "lark", "definition": "x"}},
            {"type": "namespace", "name": "multi_agent_v1", "tools": [{"type": "function", "name": "spawn_agent"}]},
            {"type": "web_search", "external_web_access": False},
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "reasoning": {"effort": "low", "summary": "auto"},
        "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}, "verbosity": "low"},
        "include": ["reasoning.encrypted_content"],
        "store": False,
        "prompt_cache_key": "probe",
        "client_metadata": {"x": "y"},
        "provider": {"only": ["openai", "anthropic", "google-vertex", "google-ai-studio"]},
    }


def messages_body(model: str) -> dict:
    """A valid Anthropic Messages request using every nested structure its parser reads."""
    tool = {"name": "lookup", "description": "d", "input_schema": {"type": "object", "properties": {}},
            "cache_control": {"type": "ephemeral"}}
    return {
        "model": model,
        "max_tokens": 4,
        "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi"},
                                         {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                      "data": "iVBORw0KGgo="}}]},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "sig"},
                                              {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "42",
                                          "is_error": False}]},
            {"role": "system", "content": "reminder"},
        ],
        "tools": [tool],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        "thinking": {"type": "disabled"},
        "stop_sequences": ["\n\n"],
        "metadata": {"user_id": "probe"},
        "provider": {"only": ["openai", "anthropic", "google-vertex", "google-ai-studio"]},
    }


def routes(
    *, key_hash: str, byok_id: str, account_id: int, purchase_id: int, key_id: int = 0,
    guardrail_id: str = "00000000-0000-4000-8000-000000000000",
) -> list[Route]:
    """Every route of the platform, with real ids filled in. Add new pages and endpoints here."""
    api = "/api/v1"
    chats = [chat_body(model) for model in CHAT_MODELS]
    return [
        Route(f"{api}/models", query=("category", "supported_parameters", "context", "min_price", "max_price",
                                      "min_output_price", "max_output_price", "offset", "limit", "zdr", "sort",
                                      "input_modalities", "output_modalities")),
        Route(f"{api}/models/count", query=("supported_parameters", "context", "max_price")),
        Route(f"{api}/models/openai/gpt-4o-mini/endpoints"),
        Route(f"{api}/model/openai/gpt-4o-mini"),
        Route(f"{api}/providers"),
        Route(f"{api}/key", auth="key"),
        Route(f"{api}/auth/key", auth="key"),
        Route(f"{api}/credits", auth="key"),
        Route(f"{api}/generation", auth="key", query=("id",)),
        Route(f"{api}/activity", auth="management", query=("date", "api_key_hash")),
        Route(f"{api}/keys", ("GET", "POST"), auth="management", query=("offset", "include_disabled"),
              body={"name": "probe", "limit": 1, "limit_reset": "daily", "include_byok_in_limit": False,
                    "expires_at": "2999-01-01T00:00:00Z"}),
        Route(f"{api}/keys/{key_hash}", ("GET", "PATCH"), auth="management",
              body={"name": "probe", "limit": 1, "limit_reset": "weekly", "disabled": False}),
        Route(f"{api}/byok", ("GET", "POST"), auth="management", query=("offset", "limit", "provider", "workspace_id"),
              body={"provider": "openai", "key": "sk-probe-123456789", "name": "probe"}),
        Route(f"{api}/byok/{byok_id}", ("GET", "PATCH"), auth="management", body={"name": "probe", "disabled": False}),
        *(Route(f"{api}/chat/completions", ("POST",), auth="key", body=chat) for chat in chats),
        *(Route(f"{api}/responses", ("POST",), auth="key", body=responses_body(model)) for model in CHAT_MODELS),
        Route(f"{api}/completions", ("POST",), auth="key", body={"model": "openai/gpt-4o-mini", "prompt": "hi",
                                                                  "max_tokens": 4}),
        *(Route(f"{api}/messages", ("POST",), auth="key", envelope="anthropic", body=messages_body(model))
          for model in CHAT_MODELS),
        Route(f"{api}/messages/count_tokens", ("POST",), auth="key", envelope="anthropic",
              body={"model": "openai/gpt-4o-mini", "system": "be brief", "messages": [{"role": "user", "content": "hi"}],
                    "tools": [{"name": "lookup", "input_schema": {"type": "object"}}]}),
        # Pages (a signed-in staff user); their JSON endpoints answer in the envelope too.
        Route("/", api=False, auth="session"),
        Route("/settings/credits", api=False, auth="session"),
        Route(f"/settings/credits/receipts/{purchase_id}", api=False, auth="session"),
        Route("/settings/credits/quote", auth="session", query=("amount", "method")),
        Route(f"/settings/credits/purchases/{purchase_id}/status", auth="session"),
        Route("/settings/credits/card/purchase", ("POST",), auth="session", form=True, body={"amount": "10"}),
        Route("/settings/credits/crypto/purchase", ("POST",), api=False, auth="session", form=True,
              body={"amount": "10"}),
        Route("/settings/credits/auto-topup", ("POST",), api=False, auth="session", form=True,
              body={"enabled": "on", "threshold": "5", "amount": "10"}),
        Route("/settings/credits/privacy", ("POST",), api=False, auth="session", form=True,
              body={"allow_training_discount": "on"}),
        Route(f"/settings/credits/purchases/{purchase_id}/refund", ("POST",), api=False, auth="session", form=True),
        Route("/billing/crypto/simulated/nope", ("GET", "POST"), api=False),
        Route("/staff/ledger", api=False, auth="session", query=("q",)),
        Route(f"/staff/ledger/{account_id}", api=False, auth="session", query=("before",)),
        Route("/accounts/login/", ("GET", "POST"), api=False, form=True, body={"login": "a@b.c", "password": "x"}),
        Route("/accounts/signup/", ("POST",), api=False, form=True,
              body={"email": "probe@example.com", "password1": "a-long-pass", "password2": "a-long-pass"}),
        Route("/admin/", api=False, auth="session"),
        # Ids past a 64-bit column in the path.
        Route(f"/settings/credits/receipts/{HUGE_ID}", api=False, auth="session"),
        Route(f"/settings/credits/purchases/{HUGE_ID}/status", auth="session"),
        Route(f"/staff/ledger/{HUGE_ID}", api=False, auth="session"),
        Route(f"/admin/accounts/account/{HUGE_ID}/change/", api=False, auth="session"),
        Route(f"{api}/keys/{HUGE_ID}", ("GET", "PATCH"), auth="management", body={"name": "x"}),
        Route(f"{api}/byok/{HUGE_ID}", auth="management"),
        # The dashboard's pages (issue 8).
        Route("/activity", api=False, auth="session",
              query=("period", "group", "model", "provider", "key", "since", "until", "member", "status", "before")),
        Route("/activity/log", api=False, auth="session", query=("model", "provider", "key", "since", "until", "member",
                                                                 "status", "before", "after")),
        Route("/activity/export.csv", api=False, auth="session", query=("period", "group", "since", "until", "member")),
        Route("/activity/generations/gen-probe-unknown", api=False, auth="session"),
        Route("/settings/keys", ("GET", "POST"), api=False, auth="session", form=True,
              body={"name": "probe", "limit": "1", "limit_reset": "daily", "expires_at": "2999-01-01",
                    "include_byok_in_limit": "on"}),
        Route(f"/settings/keys/{key_hash}", ("GET", "POST"), api=False, auth="session", form=True,
              body={"name": "probe", "limit": "2", "limit_reset": "weekly"}),
        Route(f"/settings/keys/{key_hash}/toggle", ("POST",), api=False, auth="session", form=True),
        Route(f"/settings/keys/{HUGE_ID}", api=False, auth="session"),
        Route("/settings/privacy", ("GET", "POST"), api=False, auth="session", form=True,
              body={"allow_training_paid": "on", "zdr_only": "", "allowed_providers": "openai",
                    "ignored_providers": "", "allow_training_discount": "on"}),
        Route("/settings/byok", ("GET", "POST"), api=False, auth="session", form=True,
              body={"provider": "openai", "key": "sk-probe-page-123456", "mode": "fallback"}),
        Route(f"/settings/byok/{byok_id}", ("POST",), api=False, auth="session", form=True,
              body={"action": "disable"}),
        Route("/settings/account", api=False, auth="session"),
        Route("/settings/account/delete", ("POST",), api=False, auth="session", form=True,
              body={"password": "not-the-password", "confirm": "delete"}),
        Route("/models", api=False, query=("q", "modality", "output", "context", "max_price", "free", "params",
                                           "sort", "provider", "author")),
        Route("/models/openai/gpt-4o-mini", api=False),
        Route("/models/nobody/nothing", api=False),
        # The chatroom page (issue 10); its socket's frames are fuzzed in tests/chatroom/test_chatroom_consumer.py.
        Route("/chat", api=False, auth="session", query=("q", "model")),
        # Embeddings, presets, user-filtered models and ZDR endpoints (issue 11).
        Route(f"{api}/embeddings", ("POST",), auth="key",
              body={"model": "openai/text-embedding-3-small", "input": ["hi", "there"], "encoding_format": "float",
                    "dimensions": 8, "provider": {"sort": "price"}, "user": "probe"}),
        Route(f"{api}/embeddings/models", query=("offset", "limit")),
        Route(f"{api}/models/user", auth="key", query=("offset", "limit")),
        Route(f"{api}/endpoints/zdr"),
        Route(f"{api}/generation/content", auth="key", query=("id",)),
        Route(f"{api}/presets", auth="key", query=("offset", "limit")),
        Route(f"{api}/presets/probe", auth="key"),
        Route(f"{api}/presets/probe/versions", auth="key", query=("offset", "limit")),
        Route(f"{api}/presets/probe/versions/1", auth="key"),
        Route(f"{api}/presets/probe/versions/{HUGE_ID}", auth="key"),
        Route(f"{api}/presets/probe/chat/completions", ("POST",), auth="key",
              body={"model": "openai/gpt-4o-mini", "temperature": 0.5, "provider": {"sort": "price"},
                    "messages": [{"role": "system", "content": "s"}],
                    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]}),
        Route(f"{api}/presets/probe/messages", ("POST",), auth="key",
              body={"model": "openai/gpt-4o-mini", "system": "s", "max_tokens": 5,
                    "tools": [{"name": "f", "input_schema": {"type": "object"}}]}),
        Route(f"{api}/presets/probe/responses", ("POST",), auth="key",
              body={"model": "openai/gpt-4o-mini", "instructions": "s", "max_output_tokens": 5,
                    "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}]}),
        Route("/settings/presets", api=False, auth="session"),
        Route("/settings/presets/new", ("GET", "POST"), api=False, auth="session", form=True,
              body={"name": "probe", "slug": "probe-page", "model": "openai/gpt-4o-mini", "sort": "price",
                    "only": "openai", "system_prompt": "s", "temperature": "0.5", "max_tokens": "5",
                    "tools": "[]", "params": "{}"}),
        Route("/settings/presets/probe", ("GET", "POST"), api=False, auth="session", form=True,
              body={"name": "probe", "model": "openai/gpt-4o-mini", "temperature": "0.5", "tools": "", "params": ""}),
        Route("/settings/presets/probe/versions/1/restore", ("POST",), api=False, auth="session", form=True),
        Route(f"/settings/presets/probe/versions/{HUGE_ID}/restore", ("POST",), api=False, auth="session", form=True),
        # The support console (issue 9; the probe's user is a superuser, i.e. a support lead).
        Route("/staff/", api=False, auth="session", query=("q",)),
        Route(f"/staff/accounts/{account_id}", api=False, auth="session"),
        Route(f"/staff/accounts/{account_id}/ledger", api=False, auth="session", query=("before",)),
        Route(f"/staff/accounts/{HUGE_ID}", api=False, auth="session"),
        Route(f"/staff/accounts/{account_id}/adjust", ("POST",), api=False, auth="session", form=True,
              body={"amount": "1", "direction": "grant", "reason": "probe", "user_reason": "probe", "ticket": "T-1",
                    "idempotency_key": "probe-adjust"}),
        Route(f"/staff/accounts/{account_id}/refund", ("POST",), api=False, auth="session", form=True,
              body={"purchase_id": str(purchase_id), "reason": "probe", "idempotency_key": "probe-refund"}),
        Route(f"/staff/accounts/{account_id}/keys/{key_id}/disabled", ("POST",), api=False, auth="session",
              form=True, body={"disabled": "on", "reason": "probe", "idempotency_key": "probe-key"}),
        Route(f"/staff/accounts/{account_id}/auto-topup", ("POST",), api=False, auth="session", form=True,
              body={"enabled": "", "reason": "probe", "idempotency_key": "probe-topup"}),
        Route(f"/staff/accounts/{account_id}/notices", ("POST",), api=False, auth="session", form=True,
              body={"kind": "receipt", "purchase_id": str(purchase_id), "reason": "probe",
                    "idempotency_key": "probe-notice"}),
        Route(f"/staff/accounts/{account_id}/notes", ("POST",), api=False, auth="session", form=True,
              body={"note": "probe", "idempotency_key": "probe-note"}),
        Route("/staff/audit", api=False, auth="session", query=("staff", "account", "action", "since", "until",
                                                                "before", "format")),
        Route("/staff/catalog", api=False, auth="session"),
        Route("/staff/dead-letters", api=False, auth="session"),
        Route("/staff/catalog/outage", ("POST",), api=False, auth="session", form=True,
              body={"kind": "provider", "id": "999999", "down": "on", "reason": "probe",
                    "idempotency_key": "probe-outage"}),
        # OAuth PKCE (issue 12): the consent page, the exchange (no auth) and server-side codes.
        Route("/auth", ("GET", "POST"), api=False, auth="session", form=True,
              query=("callback_url", "code_challenge", "code_challenge_method", "key_label", "state"),
              body={"callback_url": "http://localhost:3000/cb", "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                    "code_challenge_method": "S256", "key_label": "probe", "state": "s", "limit": "1",
                    "decision": "authorize"}),
        Route(f"{api}/auth/keys", ("POST",), body={"code": "auth_code_probe", "code_verifier": "v" * 43,
                                                  "code_challenge_method": "S256"}),
        Route(f"{api}/auth/keys/code", ("POST",), auth="key",
              body={"callback_url": "https://probe.example/cb", "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                    "code_challenge_method": "S256", "limit": 1, "usage_limit_type": "daily",
                    "expires_at": "2999-01-01T00:00:00Z", "key_label": "probe"}),
        # Organizations and guardrails (issue 12)
        Route(f"{api}/guardrails", ("GET", "POST"), auth="management", query=("offset", "limit", "workspace_id"),
              body={"name": "probe", "limit_usd": 1, "reset_interval": "daily", "allowed_providers": ["openai"],
                    "enforce_zdr_openai": True, "include_byok_in_budgets": False}),
        Route(f"{api}/guardrails/{guardrail_id}", ("GET", "PATCH"), auth="management",
              body={"name": "probe", "limit_usd": 2, "ignored_models": ["openai/gpt-4o-mini"]}),
        Route(f"{api}/guardrails/{guardrail_id}/assignments/keys", ("GET", "POST"), auth="management",
              query=("offset", "limit"), body={"key_hashes": [key_hash]}),
        Route(f"{api}/guardrails/{guardrail_id}/assignments/keys/remove", ("POST",), auth="management",
              body={"key_hashes": [key_hash]}),
        Route(f"{api}/guardrails/{guardrail_id}/assignments/members", ("GET", "POST"), auth="management",
              query=("offset", "limit"), body={"member_user_ids": ["user_probe"]}),
        Route(f"{api}/guardrails/{guardrail_id}/assignments/members/remove", ("POST",), auth="management",
              body={"member_user_ids": ["user_probe"]}),
        Route(f"{api}/guardrails/assignments/keys", auth="management", query=("offset", "limit")),
        Route(f"{api}/guardrails/assignments/members", auth="management", query=("offset", "limit")),
        Route(f"{api}/guardrails/{HUGE_ID}", ("GET", "PATCH"), auth="management", body={"name": "x"}),
        Route(f"{api}/organization/members", auth="management", query=("offset", "limit")),
        Route(f"{api}/activity", auth="management", query=("user_id",)),
        Route("/settings/organization", ("GET", "POST"), api=False, auth="session", form=True,
              body={"action": "transfer", "amount": "1", "token": "probe"}),
        Route("/settings/organization", ("POST",), api=False, auth="session", form=True,
              body={"action": "create", "name": "Probe org"}),
        Route("/settings/context", ("POST",), api=False, auth="session", form=True, body={"account": "personal"}),
        Route("/organizations/invite/probe-token", ("GET", "POST"), api=False, auth="session", form=True),
        Route("/settings/guardrails", ("GET", "POST"), api=False, auth="session", form=True,
              body={"name": "probe", "limit": "1", "reset_interval": "daily", "allowed_providers": "openai"}),
        Route(f"/settings/guardrails/{guardrail_id}", ("GET", "POST"), api=False, auth="session", form=True,
              body={"action": "save", "name": "probe", "limit": "1", "reset_interval": "weekly"}),
        Route(f"/settings/guardrails/{guardrail_id}", ("POST",), api=False, auth="session", form=True,
              body={"action": "assign", "key_hashes": key_hash}),
        Route(f"/settings/guardrails/{HUGE_ID}", api=False, auth="session"),
    ]


HUGE_ID = "9" * 20
WEBHOOKS = ("/billing/webhooks/stripe", "/billing/webhooks/crypto")


@dataclass
class Identities:
    key: str
    management: str
    session_cookie: str
    csrf: str = "probeprobeprobeprobeprobeprobe12"  # any 32 characters; sent as cookie and header


@dataclass
class Failure:
    method: str
    url: str
    case: str
    status: int
    body: str

    def __str__(self) -> str:
        return f"{self.method} {self.url[:120]} [{self.case}] -> {self.status}: {self.body[:200]}"


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def nested_object(depth: int, inner: str = "1") -> str:
    return '{"a":' * depth + inner + "}" * depth


def _with(body: dict, path: tuple, value: object) -> dict:
    """``body`` with the field at ``path`` replaced by ``value`` (a deep copy)."""
    copy = json.loads(json.dumps(body))
    target = copy
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return copy


def _leaf_paths(value: object, prefix: tuple = ()) -> Iterator[tuple]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield prefix + (key,)
            yield from _leaf_paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield prefix + (index,)
            yield from _leaf_paths(item, prefix + (index,))


def _dumps(body: object) -> bytes:
    return json.dumps(body, ensure_ascii=True).encode()  # "\ud800" leaves as the escape "\\ud800"


def body_cases(route: Route, max_body: int) -> Iterator[tuple[str, bytes, str]]:
    """(case name, raw body, content type) for a write route."""
    if route.form:
        kind = "application/x-www-form-urlencoded"
        for name in route.body or {"x": ""}:
            for value in (*HOSTILE_NUMBERS, "\ud800", "x" * 10_000, "%ED%A0%80", "%FF"):
                fields = {k: (value if k == name else v) for k, v in route.body.items()}
                raw = "&".join(f"{k}={quote(str(v), safe='%', errors='surrogatepass')}" for k, v in fields.items())
                yield f"form {name}={value!r:.20}", raw.encode(), kind
        yield "form non-utf8", b"amount=\xff\xfe", kind
        yield "form too large", b"a=" + b"x" * (max_body + 10), kind
        return
    kind = "application/json"
    if route.body:
        yield "baseline", _dumps(route.body), kind
    yield "nested 100000", nested(100_000), kind
    yield "nested object 100000", nested_object(100_000).encode(), kind
    yield "nested 600", nested(600), kind
    yield "non-utf8", b'{"name": "\xff\xfe"}', kind
    yield "lone surrogate raw", b'{"name": "\xed\xa0\x80"}', kind
    yield "too large", b'{"x": "' + b"x" * (max_body + 10) + b'"}', kind
    yield "not an object", b"[1, 2]", kind
    yield "empty", b"", kind
    for path in _leaf_paths(route.body):
        for value in HOSTILE_VALUES:
            yield f"{'.'.join(map(str, path))}={value!r:.24}", _dumps(_with(route.body, path, value)), kind
        for number in HOSTILE_JSON_NUMBERS:
            marker = "__probe_number__"
            text = _dumps(_with(route.body, path, marker)).replace(f'"{marker}"'.encode(), number.encode())
            yield f"{'.'.join(map(str, path))}=json {number[:12]}", text, kind
        # A field nested deeper than the serializer can write back (orjson stops at 255 levels).
        deep = _dumps(_with(route.body, path, "__deep__")).replace(b'"__deep__"', nested_object(300).encode())
        yield f"{'.'.join(map(str, path))}=nested 300", deep, kind


def webhook_cases() -> Iterator[tuple[str, bytes, dict]]:
    signatures = {
        "stripe": {"Stripe-Signature": "t=1,v1=abc"},
        "stripe absurd t": {"Stripe-Signature": "t=99999999999999999999999,v1=abc"},
        "stripe negative t": {"Stripe-Signature": "t=-99999999999999999999,v1=abc"},
        "stripe t=²": {"Stripe-Signature": "t=²,v1=abc".encode()},
        "stripe non-ascii": {"Stripe-Signature": b"t=1,v1=\xff\xfe"},
        "crypto": {"X-Crypto-Signature": "t=1,v1=abc"},
        "crypto absurd t": {"X-Crypto-Signature": "t=99999999999999999999999,v1=abc"},
        "crypto t=nan": {"X-Crypto-Signature": "t=nan,v1=abc"},
        "none": {},
    }
    bodies = {
        "non-utf8": b"\xff\xfe\x00{",
        "lone surrogate": b'{"id": "\xed\xa0\x80"}',
        "nested 100000": nested(100_000),
        "json": b'{"id": "evt_1", "type": "payment_intent.succeeded"}',
        "empty": b"",
    }
    for sig_name, headers in signatures.items():
        for body_name, body in bodies.items():
            yield f"{sig_name} / {body_name}", body, headers


def probe(
    base_url: str, identities: Identities, route_list: list[Route], *, max_body: int, baselines: dict | None = None
) -> tuple[int, list[Failure]]:
    """Send every hostile case; returns (requests sent, failures). ``baselines`` collects the status of
    each write route's unaltered body (``{(method, path, model): status}``), to prove the fuzzing got
    past validation."""
    failures: list[Failure] = []
    sent = 0
    baselines = {} if baselines is None else baselines
    with httpx.Client(base_url=base_url, timeout=60, follow_redirects=False) as client:

        def send(route: Route | None, method: str, url: str, case: str, *, content=None, headers=None) -> None:
            nonlocal sent
            headers = dict(headers or {})
            cookies = {}
            if route is not None:
                if route.auth == "key":
                    headers["Authorization"] = f"Bearer {identities.key}"
                elif route.auth == "management":
                    headers["Authorization"] = f"Bearer {identities.management}"
                elif route.auth == "session":
                    cookies["sessionid"] = identities.session_cookie
                cookies["csrftoken"] = identities.csrf
                headers["X-CSRFToken"] = identities.csrf
            client.cookies.clear()
            sent += 1
            try:
                response = client.request(method, url, content=content, headers=headers, cookies=cookies)
            except httpx.HTTPError as exc:
                failures.append(Failure(method, url, case, 0, f"no answer: {exc!r}"))
                return
            status = response.status_code
            if case == "baseline" and route is not None:
                baselines[(method, url, str(route.body.get("model", "")))] = status
            bad = status >= 500
            if route is not None and route.api and status in (400, 413) and not _is_envelope(response, route.envelope):
                bad = True
            if bad:
                failures.append(Failure(method, url, case, status, response.text))

        for route in route_list:
            for method in route.methods:
                if method == "GET":
                    send(route, "GET", route.path, "plain")
                    for name in (*route.query, *COMMON_QUERY):
                        for value in HOSTILE_QUERY:
                            send(route, "GET", f"{route.path}?{name}={value}", f"query {name}={value[:12]}")
                    continue
                for case, content, kind in body_cases(route, max_body):
                    send(route, method, route.path, case, content=content, headers={"Content-Type": kind})
        for path in WEBHOOKS:
            for case, content, headers in webhook_cases():
                send(None, "POST", path, case, content=content, headers={"Content-Type": "application/json", **headers})
    return sent, failures


def _is_envelope(response: httpx.Response, kind: str = "openrouter") -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    if kind == "anthropic":
        error = body.get("error") if isinstance(body, dict) else None
        return (body.get("type") == "error" and "request_id" in body and isinstance(error, dict)
                and error.get("type") == "invalid_request_error" and isinstance(error.get("message"), str))
    error = body.get("error") if isinstance(body, dict) else None
    return isinstance(error, dict) and error.get("code") == response.status_code and isinstance(error.get("message"), str)
