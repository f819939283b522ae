"""Database reads for async code: run in a worker thread, never on the event loop."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections

P = ParamSpec("P")
R = TypeVar("R")


def in_db_thread(function: Callable[P, R]):
    """``await``-able version of ``function``, run in a thread pool worker.

    Worker threads keep their own connections; stale or broken ones are closed first,
    as Django does around each request.
    """

    @functools.wraps(function)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        close_old_connections()
        return function(*args, **kwargs)

    return sync_to_async(run, thread_sensitive=False)
