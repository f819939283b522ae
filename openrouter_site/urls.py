from django.conf import settings
from django.contrib import admin
from django.contrib.staticfiles.views import serve as static_serve
from django.urls import include, path, re_path

from activity import views as activity_views
from openrouter_site.metrics import metrics_view

urlpatterns = [
    path("api/v1/", include("routing.urls")),
    path("api/v1/", include("accounts.urls")),
    path("api/v1/", include("billing.urls")),
    path("api/v1/", include("activity.urls")),
    path("api/v1/", include("presets.urls")),
    # The dashboard (issue 8): home (landing or overview), activity, keys and settings, models, credits.
    path("", activity_views.home, name="home"),
    path("", include("activity.page_urls")),
    path("", include("accounts.page_urls")),
    path("", include("accounts.org_urls")),
    path("", include("routing.page_urls")),
    path("", include("billing.page_urls")),
    path("", include("presets.page_urls")),
    path("", include("accounts.staff.urls")),
    path("", include("chatroom.page_urls")),
    path("accounts/", include("allauth.urls")),
    path("admin/", admin.site.urls),
    path("metrics", metrics_view, name="metrics"),  # staff or METRICS_TOKEN only (openrouter_site/metrics.py)
]

if settings.SERVE_STATIC:
    # The pages' CSS and scripts (and the admin's) from the app's own process, DEBUG or not.
    urlpatterns.append(re_path(r"^static/(?P<path>.*)$", static_serve, {"insecure": True}))

handler400 = "openrouter_site.errors.handler400"
handler403 = "openrouter_site.errors.handler403"
handler404 = "openrouter_site.errors.handler404"
handler500 = "openrouter_site.errors.handler500"
