from django.urls import path

from . import api, byok_api, guardrails_api, oauth_api

urlpatterns = [
    path("key", api.CurrentKeyApi.as_view()),
    path("auth/key", api.CurrentKeyApi.as_view()),
    path("auth/keys", oauth_api.AuthKeysApi.as_view()),
    path("auth/keys/code", oauth_api.AuthKeysCodeApi.as_view()),
    path("keys", api.KeysApi.as_view()),
    path("keys/<str:key_hash>", api.KeyDetailApi.as_view()),
    path("byok", byok_api.ByokKeysApi.as_view()),
    path("byok/<str:key_id>", byok_api.ByokKeyDetailApi.as_view()),
    path("guardrails", guardrails_api.GuardrailsApi.as_view()),
    path("guardrails/assignments/keys", guardrails_api.AccountKeyAssignmentsApi.as_view()),
    path("guardrails/assignments/members", guardrails_api.AccountMemberAssignmentsApi.as_view()),
    path("guardrails/<str:guardrail_id>", guardrails_api.GuardrailDetailApi.as_view()),
    path("guardrails/<str:guardrail_id>/assignments/keys", guardrails_api.GuardrailKeyAssignmentsApi.as_view()),
    path("guardrails/<str:guardrail_id>/assignments/keys/remove", guardrails_api.GuardrailKeyUnassignApi.as_view()),
    path("guardrails/<str:guardrail_id>/assignments/members", guardrails_api.GuardrailMemberAssignmentsApi.as_view()),
    path(
        "guardrails/<str:guardrail_id>/assignments/members/remove", guardrails_api.GuardrailMemberUnassignApi.as_view()
    ),
    path("organization/members", guardrails_api.OrganizationMembersApi.as_view()),
]
