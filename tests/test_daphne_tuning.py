"""Daphne's Twisted tuning (openrouter_site/daphne_tuning.py) changes no answer, only the cost."""

from twisted.web import http

from openrouter_site import asgi  # noqa: F401  (applies the tuning, as a server importing the app does)
from openrouter_site.daphne_tuning import content_type_parsing_memoise


def test_content_type_parsing_is_memoised_and_answers_as_before():
    assert hasattr(http._parseContentType, "cache_info")
    assert content_type_parsing_memoise() is False  # applied once, not wrapped twice
    original = http._parseContentType.__wrapped__
    for value in (
        b"application/json",
        b"application/json; charset=utf-8",
        b"Application/X-WWW-Form-Urlencoded",
        b"multipart/form-data; boundary=xyz",
        b"",
        b"\xff\xfe garbage;;;",
    ):
        assert http._parseContentType(value) == original(value)
        assert http._parseContentType(value) == original(value)  # the cached answer too


def test_twisted_access_lines_are_not_formatted():
    from daphne.http_protocol import HTTPFactory

    assert HTTPFactory.log(object(), object()) is None
