from django.urls import re_path

from routing import api

# Included under "api/v1/"; a trailing slash is tolerated, as OpenRouter does.
urlpatterns = [
    re_path(r"^models/?$", api.models_list, name="models-list"),
    re_path(r"^models/count/?$", api.models_count, name="models-count"),
    re_path(r"^models/user/?$", api.models_user, name="models-user"),
    re_path(r"^endpoints/zdr/?$", api.endpoints_zdr, name="endpoints-zdr"),
    re_path(r"^models/(?P<author>[^/]+)/(?P<slug>[^/]+)/endpoints/?$", api.model_endpoints, name="model-endpoints"),
    re_path(r"^model/(?P<author>[^/]+)/(?P<slug>[^/]+)/?$", api.model_detail, name="model-detail"),
    re_path(r"^providers/?$", api.providers_list, name="providers-list"),
    re_path(r"^embeddings/models/?$", api.embeddings_models, name="embeddings-models"),
]
