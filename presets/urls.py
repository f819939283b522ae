from django.urls import re_path

from . import api

# Included under "api/v1/".
SLUG = r"(?P<slug>[^/]{1,200})"
urlpatterns = [
    re_path(r"^presets/?$", api.PresetListApi.as_view()),
    re_path(rf"^presets/{SLUG}/versions/(?P<version>[^/]{{1,40}})/?$", api.PresetVersionApi.as_view()),
    re_path(rf"^presets/{SLUG}/versions/?$", api.PresetVersionsApi.as_view()),
    re_path(rf"^presets/{SLUG}/(?P<api_path>chat/completions|completions|messages|responses)/?$",
            api.PresetFromInferenceApi.as_view()),
    re_path(rf"^presets/{SLUG}/?$", api.PresetApi.as_view()),
]
