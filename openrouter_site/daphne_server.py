"""Daphne, as ``make run`` and the benchmarks start it: Daphne's own command line, on uvloop.

    python -m openrouter_site.daphne_server [daphne's arguments] openrouter_site.asgi:application

Daphne runs Twisted on an asyncio event loop that it creates when ``daphne.server`` is first
imported. Installing uvloop's event loop policy before that import makes that loop uvloop's
(libuv, written in C) instead of the standard library's selector loop. Twisted's HTTP server is
unchanged; what gets faster is everything else the gateway does on that loop: the provider
connections (aiohttp), the Redis script client, timers and task switches. Measured with
``bench/burst.py`` (500 parallel streams) and ``bench/run.py`` (see the README's figures).

Without uvloop installed (it is a dependency, so only in an unusual environment) this is plain
Daphne. Every argument is passed to Daphne unchanged.
"""

from __future__ import annotations

import asyncio
import os
import sys


def event_loop_policy_install() -> bool:
    """uvloop's policy, if uvloop is there and Daphne has not made its loop yet."""
    if "daphne.server" in sys.modules:
        return False
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def main() -> None:
    event_loop_policy_install()
    if os.environ.get("DAPHNE_HTTP", "httptools") != "twisted":
        from openrouter_site.daphne_http import install

        install()
    from daphne.cli import CommandLineInterface

    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
