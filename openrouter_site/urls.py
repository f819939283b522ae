from django.conf import settings
from django.contrib import admin
from django.contrib.staticfiles.views import serve as static_serve
from django.urls import include, path, re_path
from django.views.generic import RedirectView

from openrouter_site.metrics import metrics_view

urlpatterns = [
    path("api/v1/", include("routing.urls")),
    path("api/v1/", include("accounts.urls")),
    path("api/v1/", include("billing.urls")),
    path("api/v1/", include("activity.urls")),
    # The dashboard's pages so far are the credits pages; the home page leads there (or to sign-in).
    path("", RedirectView.as_view(url="/settings/credits", permanent=False), name="home"),
    path("", include("billing.page_urls")),
    path("accounts/", include("allauth.urls")),
    path("admin/", admin.site.urls),
    path("metrics", metrics_view, name="metrics"),  # staff or METRICS_TOKEN only (openrouter_site/metrics.py)
]

if settings.SERVE_STATIC:
    # The pages' CSS and scripts (and the admin's) from the app's own process, DEBUG or not.
    urlpatterns.append(re_path(r"^static/(?P<path>.*)$", static_serve, {"insecure": True}))

handler404 = "openrouter_site.errors.handler404"
handler500 = "openrouter_site.errors.handler500"
