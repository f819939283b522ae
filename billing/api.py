"""GET /credits (management key)."""

from __future__ import annotations

from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.auth import management_key_from_request

from .money import nanos_to_usd_number
from .selectors import account_totals


class CreditsApi(APIView):
    def get(self, request):
        api_key = management_key_from_request(request)
        totals = account_totals(account_id=api_key.account_id)
        return Response(
            {
                "data": {
                    "total_credits": nanos_to_usd_number(totals["total_credits"]),
                    "total_usage": nanos_to_usd_number(totals["total_usage"]),
                }
            }
        )
