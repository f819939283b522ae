"""Organization and guardrail pages (issue 12)."""

from django.urls import path

from . import org_views

app_name = "orgs"

urlpatterns = [
    path("settings/context", org_views.context_switch, name="switch"),
    path("settings/organization", org_views.organization_page, name="organization"),
    path("organizations/invite/<str:token>", org_views.invite_page, name="invite"),
    path("settings/guardrails", org_views.guardrails_page, name="guardrails"),
    path("settings/guardrails/<str:guardrail_id>", org_views.guardrail_page, name="guardrail"),
]
