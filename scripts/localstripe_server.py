"""Run localstripe (the local Stripe server) with its store where we want it.

localstripe pickles its whole store to /tmp/localstripe.pickle after every write. `make run`
keeps it in var/ instead (``--store``), so saved cards outlive a restart like the database
does; tests keep it in memory only (no ``--store``), which is also faster. It listens on
127.0.0.1 only (localstripe itself would listen on every interface, IPv4 and IPv6).

    python scripts/localstripe_server.py --port 8420 [--host 127.0.0.1] [--store var/localstripe.pickle]
"""

from __future__ import annotations

import argparse
import logging
import pickle
import socket
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--host", default="127.0.0.1", help="IPv4 address to listen on (default 127.0.0.1)")
    parser.add_argument("--store", type=Path, default=None, help="pickle file to load and save the store (default: none)")
    args = parser.parse_args()

    from aiohttp import web
    from localstripe import resources, server

    store_path: Path | None = args.store

    def load(self) -> None:
        if store_path is not None and store_path.exists():
            with store_path.open("rb") as handle:
                self.clear()
                self.update(pickle.load(handle))

    def dump(self) -> None:
        if store_path is not None:
            tmp = store_path.with_suffix(".tmp")
            with tmp.open("wb") as handle:
                pickle.dump(dict(self), handle, protocol=pickle.HIGHEST_PROTOCOL)
            tmp.replace(store_path)

    resources.Store.try_load_from_disk = load
    resources.Store.dump_to_disk = dump
    resources.store.try_load_from_disk()
    # What localstripe's own start() does, on one IPv4 address instead of every interface.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    access_log = logging.getLogger("aiohttp.access")
    access_log.setLevel(logging.DEBUG)
    access_log.addHandler(logging.StreamHandler())
    web.run_app(server.app, sock=sock, access_log=access_log)


if __name__ == "__main__":
    main()
