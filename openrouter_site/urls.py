from django.conf import settings
from django.contrib import admin
from django.contrib.staticfiles.views import serve as static_serve
from django.urls import include, path, re_path
from django.views.generic import RedirectView

urlpatterns = [
    path("api/v1/", include("routing.urls")),
    path("api/v1/", include("accounts.urls")),
    path("api/v1/", include("billing.urls")),
    path("api/v1/", include("activity.urls")),
    # The dashboard's pages so far are the credits pages; the home page leads there (or to sign-in).
    path("", RedirectView.as_view(url="/settings/credits", permanent=False), name="home"),
    path("", include("billing.page_urls")),
    path("", include("accounts.staff.urls")),
    path("accounts/", include("allauth.urls")),
    path("admin/", admin.site.urls),
]

if settings.SERVE_STATIC:
    # The pages' CSS and scripts (and the admin's) from the app's own process, DEBUG or not.
    urlpatterns.append(re_path(r"^static/(?P<path>.*)$", static_serve, {"insecure": True}))

handler400 = "openrouter_site.errors.handler400"
handler404 = "openrouter_site.errors.handler404"
handler500 = "openrouter_site.errors.handler500"
