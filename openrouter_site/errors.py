"""Errors are classes with a status, a message and metadata.

Every one of them becomes OpenRouter's envelope
``{"error": {"code": <status>, "message": ..., "metadata": {...}}}`` through
``error_body``; the gateway, the DRF views and the Django fallbacks all use it,
so no user-facing failure is ever a bare 500 or a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from django.http import HttpRequest, HttpResponse

logger = logging.getLogger("openrouter.errors")


class ApiError(Exception):
    status: int = 400
    message: str = "Bad request"
    error_type: str | None = None

    def __init__(
        self,
        message: str | None = None,
        *,
        status: int | None = None,
        metadata: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        user_id: str | None = None,
    ) -> None:
        self.message = message or self.message
        if status is not None:
            self.status = status
        self.metadata = metadata
        self.headers = headers or {}
        self.user_id = user_id
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, self.metadata, user_id=self.user_id)


class BadRequest(ApiError):
    status = 400
    message = "Bad request"


class InvalidJson(BadRequest):
    message = "Invalid JSON in request body"


class Unauthorized(ApiError):
    status = 401
    message = "No auth credentials found"


class PaymentRequired(ApiError):
    status = 402
    message = "Insufficient credits. Add more using https://openrouter.ai/settings/credits"


class Forbidden(ApiError):
    status = 403
    message = "Only management keys can perform this operation"


class NotFound(ApiError):
    status = 404
    message = "Not found"


class MethodNotAllowed(ApiError):
    status = 405
    message = "Method not allowed"


class PayloadTooLarge(ApiError):
    status = 413
    message = "Payload too large"


class RateLimited(ApiError):
    status = 429
    message = "Rate limit exceeded"


class ServerError(ApiError):
    status = 500
    message = "Internal Server Error"


class ProviderUnavailable(ApiError):
    status = 502
    message = "Provider returned error"


class ServiceUnavailable(ApiError):
    status = 503
    message = "No available provider could serve this request"


def error_body(
    status: int, message: str, metadata: dict[str, Any] | None = None, *, user_id: str | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": status, "message": message}
    if metadata is not None:
        error["metadata"] = metadata
    body: dict[str, Any] = {"error": error}
    if user_id is not None:
        body["user_id"] = user_id
    return body


def error_response(exc: ApiError) -> HttpResponse:
    response = HttpResponse(orjson.dumps(exc.body()), status=exc.status, content_type="application/json")
    for name, value in exc.headers.items():
        response[name] = value
    return response


def drf_exception_handler(exc: Exception, context: dict[str, Any]) -> HttpResponse:
    """DRF's exception handler: every failure leaves in the OpenRouter envelope."""
    from django.core.exceptions import SuspiciousOperation
    from django.http import Http404
    from rest_framework import exceptions as drf

    if isinstance(exc, ApiError):
        return error_response(exc)
    if isinstance(exc, SuspiciousOperation):
        return error_response(_suspicious(exc))
    if isinstance(exc, Http404):
        return error_response(NotFound())
    if isinstance(exc, drf.ParseError):
        return error_response(InvalidJson())
    if isinstance(exc, drf.MethodNotAllowed):
        return error_response(MethodNotAllowed())
    if isinstance(exc, drf.UnsupportedMediaType):
        return error_response(BadRequest("Content-Type must be application/json"))
    if isinstance(exc, drf.NotAuthenticated | drf.AuthenticationFailed):
        return error_response(Unauthorized())
    if isinstance(exc, drf.PermissionDenied):
        return error_response(Forbidden())
    if isinstance(exc, drf.ValidationError):
        return error_response(BadRequest(_validation_message(exc.detail)))
    if isinstance(exc, drf.APIException):
        return error_response(ApiError(str(exc.detail), status=exc.status_code))
    logger.exception("unhandled error in %s", context.get("view"))
    return error_response(ServerError())


def _validation_message(detail: Any) -> str:
    if isinstance(detail, dict):
        parts = [f"{field}: {_validation_message(value)}" for field, value in detail.items()]
        return "; ".join(parts)
    if isinstance(detail, list):
        return "; ".join(_validation_message(item) for item in detail)
    return str(detail)


def _suspicious(exc: Exception) -> ApiError:
    """Django's refusals of a request it could not read safely: too large a body, too many fields."""
    from django.core.exceptions import RequestDataTooBig

    if isinstance(exc, RequestDataTooBig):
        return PayloadTooLarge("Request body is too large")
    return BadRequest("Bad request")


def handler400(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Django's 400s (a body over the limit, too many fields, a bad host) in the envelope; 413 for size."""
    return error_response(_suspicious(exception) if exception is not None else BadRequest())


def _is_api(request: HttpRequest) -> bool:
    """JSON envelopes for the API; pages get an HTML error page in the site's layout."""
    return request.path.startswith("/api/")


def _html_error(request: HttpRequest, status: int, title: str, message: str) -> HttpResponse:
    from django.shortcuts import render

    context = {"status": status, "title": title, "message": message}
    try:
        return render(request, "errors/error.html", context, status=status)
    except Exception:  # the layout itself failed (e.g. the database is down): plain text, still no traceback
        logger.exception("error page could not be rendered")
        return HttpResponse(f"{status} {title}", status=status, content_type="text/plain")


def handler403(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_api(request):
        return error_response(Forbidden())
    return _html_error(request, 403, "Forbidden", "You do not have access to this page.")


def handler404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_api(request):
        return error_response(NotFound())
    return _html_error(request, 404, "Not found", "There is no such page, or it is not yours.")


def handler500(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return error_response(ServerError())
    return _html_error(request, 500, "Server error", "Something went wrong on our side; it has been logged.")


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """A form posted without its CSRF token (or with a stale one): a clear message, nothing done."""
    from django.shortcuts import render

    if request.path.startswith("/api/"):
        return error_response(Forbidden("CSRF verification failed"))
    return render(request, "csrf_failure.html", {"reason": reason}, status=403)
