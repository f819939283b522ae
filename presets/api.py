"""The presets API: GET /presets[/{slug}[/versions[/{version}]]] and POST /presets/{slug}/<API path>.

Any API key of the account; another account's slug is a 404. The POST takes an inference body in the
shape of the API its path names (``chat/completions``, ``completions``, ``messages``, ``responses``) and
stores what a preset holds of it as a new designated version (creating the preset on first use).
"""

from __future__ import annotations

from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.auth import api_key_from_request
from openrouter_site.errors import BadRequest, NotFound
from openrouter_site.inputs import query_int

from . import presenters, selectors, services
from .merge import PresetError, preset_config_from

MAX_PAGE = 100
# The inference API each POST path speaks (the gateway's surface names).
SURFACE_PATHS = {"chat/completions": "chat", "completions": "completions", "messages": "messages", "responses": "responses"}


def _page(request) -> tuple[int, int]:
    offset = query_int(request.query_params, "offset", default=0, minimum=0)
    limit = query_int(request.query_params, "limit", default=50, minimum=1, maximum=MAX_PAGE)
    return offset, limit


def _preset(account_id: int, slug: str):
    preset = selectors.preset_get(account_id=account_id, slug=slug)
    if preset is None:
        raise NotFound(f"Preset {slug[:80]!r} not found")
    return preset


class PresetListApi(APIView):
    def get(self, request):
        api_key = api_key_from_request(request)
        offset, limit = _page(request)
        rows, total = selectors.preset_list(account_id=api_key.account_id, offset=offset, limit=limit)
        return Response({"data": [presenters.preset_dict(p) for p in rows], "total_count": total})


class PresetApi(APIView):
    def get(self, request, slug: str):
        api_key = api_key_from_request(request)
        return Response({"data": presenters.preset_with_version_dict(_preset(api_key.account_id, slug))})


class PresetVersionsApi(APIView):
    def get(self, request, slug: str):
        api_key = api_key_from_request(request)
        preset = _preset(api_key.account_id, slug)
        offset, limit = _page(request)
        rows, total = selectors.preset_versions(preset=preset, offset=offset, limit=limit)
        return Response({"data": [presenters.version_dict(v) for v in rows], "total_count": total})


class PresetVersionApi(APIView):
    def get(self, request, slug: str, version: str):
        api_key = api_key_from_request(request)
        preset = _preset(api_key.account_id, slug)
        if not version.isascii() or not version.isdigit() or len(version) > 9:
            raise BadRequest("'version' must be a positive integer")
        row = selectors.preset_version_get(preset=preset, version=int(version))
        if row is None:
            raise NotFound(f"Version {version} of preset {slug!r} not found")
        return Response({"data": presenters.version_dict(row)})


class PresetFromInferenceApi(APIView):
    def post(self, request, slug: str, api_path: str):
        api_key = api_key_from_request(request)
        surface = SURFACE_PATHS.get(api_path.strip("/"))
        if surface is None:
            raise NotFound(f"No inference API at presets/{{slug}}/{api_path[:80]}")
        body = request.data
        if not isinstance(body, dict):
            raise BadRequest("Request body must be a JSON object")
        try:
            config, system_prompt = preset_config_from(body=body, surface=surface)
        except PresetError as exc:
            raise BadRequest(str(exc)) from None
        preset = services.preset_version_create(
            account=api_key.account, slug=slug, config=config, system_prompt=system_prompt, creator=api_key.creator,
        )
        return Response({"data": presenters.preset_with_version_dict(_preset(api_key.account_id, preset.slug))})
