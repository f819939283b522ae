"""Daphne's Twisted tuning (openrouter_site/daphne_tuning.py) changes no answer, only the cost."""

import pytest
from twisted.web import http

from openrouter_site import asgi  # noqa: F401  (applies the tuning, as a server importing the app does)
from openrouter_site.daphne_tuning import content_type_parsing_memoise
from tests.daphne_live import echo_server_start, http_response


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


def _python(code: str, **env_overrides: str) -> str:
    """Run ``code`` in a fresh interpreter (the servers' own state, not this test process's)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "openrouter_site.settings", **env_overrides}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=Path(__file__).resolve().parent.parent, env=env,
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def test_the_daphne_launcher_puts_twisted_on_uvloop():
    # What `make run` starts: Daphne's command line after openrouter_site.daphne_server installs uvloop's policy.
    loop_type = _python(
        "from openrouter_site.daphne_server import event_loop_policy_install\n"
        "assert event_loop_policy_install()\n"
        "import daphne.server\n"
        "from twisted.internet import reactor\n"
        "print(type(reactor._asyncioEventloop).__module__)"
    )
    assert loop_type.startswith("uvloop")
    # Plain `python -m daphne` keeps the standard library's loop: the launcher is what changes it.
    assert _python("import daphne.server\nprint(type(daphne.server.twisted_loop).__module__)").startswith("asyncio")


def test_the_daphne_launcher_does_nothing_once_daphne_made_its_loop():
    assert _python(
        "import daphne.server\n"
        "from openrouter_site.daphne_server import event_loop_policy_install\n"
        "print(event_loop_policy_install())"
    ) == "False"


def test_the_app_freezes_its_loaded_heap_and_keeps_cpythons_thresholds():
    figures = _python("import gc\nimport openrouter_site.asgi\nprint(gc.get_threshold(), gc.get_freeze_count())")
    threshold, frozen = figures.rsplit(" ", 1)
    assert int(frozen) > 100_000  # Django, Twisted, the URL tree...: out of every collection's walk
    # A higher young threshold kept dropped database connections (in reference cycles) open for longer.
    assert threshold == "(700, 10, 10)"


def test_replies_are_sent_at_once_is_installed_once():
    from daphne.http_protocol import WebRequest

    from openrouter_site.daphne_tuning import replies_send_at_once

    assert WebRequest.handle_reply.sends_at_once
    assert replies_send_at_once() is False


@pytest.fixture(scope="module", params=["httptools", "twisted"])
def daphne_echo(request):
    server, port = echo_server_start(request.param)
    yield port
    server.terminate()
    server.wait(10)


def test_keep_alive_answers_arrive_whole_and_in_order(daphne_echo):
    import socket

    with socket.create_connection(("127.0.0.1", daphne_echo), timeout=10) as sock:
        left = b""
        for index in range(20):
            sock.sendall(b"GET /r%d HTTP/1.1\r\nHost: t\r\n\r\n" % index)
            head, body, left = http_response(sock, left)
            assert head.startswith(b"HTTP/1.1 200") and body == b'{"path": "/r%d"}' % index
        assert left == b""


def test_connection_close_still_closes_after_the_answer(daphne_echo):
    import socket

    with socket.create_connection(("127.0.0.1", daphne_echo), timeout=10) as sock:
        sock.sendall(b"GET /bye HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        head, body, left = http_response(sock)
        assert body == b'{"path": "/bye"}'
        assert left == b"" and sock.recv(10) == b""  # the server closed it


def test_streams_and_answers_larger_than_the_socket_takes_arrive_whole(daphne_echo):
    import socket

    from tests.daphne_echo_app import BIG

    with socket.create_connection(("127.0.0.1", daphne_echo), timeout=20) as sock:
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
        head, body, left = http_response(sock)
        assert body == b"data: 0\n\ndata: 1\n\ndata: 2\n\ndata: [DONE]\n\n"
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        head, body, left = http_response(sock, left)
        assert body == BIG and left == b""
