"""Presets pages: the list, a form to create one, a form to edit one (each save adds a version) with its
version history. Each view parses the form, calls one service and renders; a bad field re-renders the
form with its message (400) and saves nothing; another account's slug is a 404."""

from __future__ import annotations

import orjson
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from accounts.selectors import account_for_user
from accounts.services import account_get_or_create_personal
from openrouter_site.errors import ApiError

from . import selectors, services
from .models import Preset

SORTS = ("", "price", "throughput", "latency")
FORM_FIELDS = ("name", "slug", "description", "model", "sort", "only", "ignore", "system_prompt", "temperature",
               "max_tokens", "tools", "params")


class FormError(Exception):
    """A field the form cannot accept; shown as a message, nothing saved."""


def _account(request: HttpRequest):
    return account_for_user(user=request.user) or account_get_or_create_personal(user=request.user)


def _preset_of(account, slug: str) -> Preset:
    preset = selectors.preset_get(account_id=account.id, slug=slug[:64]) if "\x00" not in slug else None
    if preset is None:
        raise Http404("No such preset")
    return preset


def _number(post, name: str, *, integer: bool = False):
    raw = post.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise FormError(f"{name.replace('_', ' ').capitalize()} must be a{'n integer' if integer else ' number'}.") from None
    return value


def _json_field(post, name: str, kind: type, label: str):
    raw = post.get(name, "").strip()
    if not raw:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise FormError(f"{label} must be valid JSON.") from None
    if not isinstance(value, kind):
        raise FormError(f"{label} must be a JSON {'array' if kind is list else 'object'}.")
    return value


def _slugs(post, name: str) -> list[str]:
    return [s.strip() for s in post.get(name, "").split(",") if s.strip()]


def _form_config(post) -> tuple[dict, str | None]:
    """The form as (config in chat-completions terms, system prompt)."""
    if any("\x00" in v for values in post.lists() for v in values[1] if isinstance(v, str)):
        raise FormError("The form contains a NUL character.")
    config: dict = dict(_json_field(post, "params", dict, "Other parameters") or {})
    model = post.get("model", "").strip()
    if model:
        config["model"] = model
    provider: dict = {}
    sort = post.get("sort", "")
    if sort not in SORTS:
        raise FormError("Choose a sort from the list.")
    if sort:
        provider["sort"] = sort
    if only := _slugs(post, "only"):
        provider["only"] = only
    if ignore := _slugs(post, "ignore"):
        provider["ignore"] = ignore
    if provider:
        config["provider"] = provider
    temperature = _number(post, "temperature")
    if temperature is not None:
        config["temperature"] = temperature
    max_tokens = _number(post, "max_tokens", integer=True)
    if max_tokens is not None:
        config["max_tokens"] = max_tokens
    tools = _json_field(post, "tools", list, "Tools")
    if tools is not None:
        config["tools"] = tools
    return config, post.get("system_prompt", "").strip() or None


def _initial(preset: Preset | None) -> dict:
    """The form's values from a preset's designated version."""
    if preset is None or preset.designated_version is None:
        return {"sort": ""}
    version = preset.designated_version
    config = dict(version.config)
    provider = config.pop("provider", None) or {}
    tools = config.pop("tools", None)
    initial = {
        "name": preset.name, "slug": preset.slug, "description": preset.description,
        "model": config.pop("model", ""), "system_prompt": version.system_prompt or "",
        "temperature": config.pop("temperature", ""), "max_tokens": config.pop("max_tokens", ""),
        "sort": provider.pop("sort", "") if isinstance(provider, dict) else "",
        "only": ", ".join(provider.pop("only", []) or []) if isinstance(provider, dict) else "",
        "ignore": ", ".join(provider.pop("ignore", []) or []) if isinstance(provider, dict) else "",
        "tools": orjson.dumps(tools, option=orjson.OPT_INDENT_2).decode() if tools is not None else "",
    }
    if provider:
        config["provider"] = provider  # preferences the form has no field for stay in "other parameters"
    initial["params"] = orjson.dumps(config, option=orjson.OPT_INDENT_2).decode() if config else ""
    return initial


def _save(request: HttpRequest, account, slug: str, *, new: bool) -> Preset:
    config, system_prompt = _form_config(request.POST)
    try:
        return services.preset_version_create(
            account=account, slug=slug, config=config, system_prompt=system_prompt, creator=request.user,
            name=request.POST.get("name", "").strip() or slug, description=request.POST.get("description", "").strip(),
        )
    except ApiError as exc:
        raise FormError(exc.message) from None


@login_required
@require_http_methods(["GET"])
def presets_page(request: HttpRequest) -> HttpResponse:
    account = _account(request)
    rows, total = selectors.preset_list(account_id=account.id, limit=500)
    return render(request, "presets/presets.html", {"presets": rows, "total": total})


@login_required
@require_http_methods(["GET", "POST"])
def preset_new(request: HttpRequest) -> HttpResponse:
    account = _account(request)
    if request.method == "GET":
        return render(request, "presets/preset_form.html", {"form": _initial(None), "new": True})
    slug = request.POST.get("slug", "").strip().lower()
    try:
        if selectors.preset_get(account_id=account.id, slug=slug[:64]) is not None:
            raise FormError(f"A preset named {slug!r} exists already; edit it instead.")
        preset = _save(request, account, slug, new=True)
    except FormError as exc:
        messages.error(request, str(exc))
        return render(request, "presets/preset_form.html", {"form": request.POST, "new": True}, status=400)
    messages.success(request, f"Created preset {preset.slug} (version 1). Use it as \"model\": \"@preset/{preset.slug}\".")
    return redirect("presets:edit", slug=preset.slug)


@login_required
@require_http_methods(["GET", "POST"])
def preset_edit(request: HttpRequest, slug: str) -> HttpResponse:
    account = _account(request)
    preset = _preset_of(account, slug)
    versions, _ = selectors.preset_versions(preset=preset, limit=500)
    context = {"preset": preset, "versions": list(reversed(versions)), "new": False}
    if request.method == "GET":
        return render(request, "presets/preset_form.html", {**context, "form": _initial(preset)})
    try:
        saved = _save(request, account, preset.slug, new=False)
    except FormError as exc:
        messages.error(request, str(exc))
        return render(request, "presets/preset_form.html", {**context, "form": request.POST}, status=400)
    messages.success(request, f"Saved {saved.slug} as version {saved.designated_version.version}.")
    return redirect("presets:edit", slug=saved.slug)


@login_required
@require_POST
def preset_restore(request: HttpRequest, slug: str, version: int) -> HttpResponse:
    account = _account(request)
    preset = _preset_of(account, slug)
    old = selectors.preset_version_get(preset=preset, version=version)
    if old is None:
        raise Http404("No such version")
    try:
        saved = services.preset_version_create(
            account=account, slug=preset.slug, config=old.config, system_prompt=old.system_prompt, creator=request.user
        )
    except ApiError as exc:
        messages.error(request, exc.message)
        return redirect("presets:edit", slug=preset.slug)
    messages.success(request, f"Restored version {version} as version {saved.designated_version.version}.")
    return redirect("presets:edit", slug=preset.slug)
