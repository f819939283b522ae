from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("api/v1/", include("routing.urls")),
    path("api/v1/", include("accounts.urls")),
    path("api/v1/", include("billing.urls")),
    path("api/v1/", include("activity.urls")),
    path("accounts/", include("allauth.urls")),
    path("admin/", admin.site.urls),
]

handler404 = "openrouter_site.errors.handler404"
handler500 = "openrouter_site.errors.handler500"
