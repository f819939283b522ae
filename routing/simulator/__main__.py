"""Command line: ``python -m routing.simulator --host 127.0.0.1 --port 8090 [--config path.json]``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Coroutine
from typing import Any

from .config import SettingsError, SimulatorConfig
from .server import serve
from .state import Registry


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m routing.simulator",
        description="Simulated LLM providers (OpenAI, Anthropic Messages and Gemini dialects).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8090, help="port to bind; 0 picks a free one (default 8090)")
    parser.add_argument("--config", help='JSON config: {"default": {...}, "providers": {"<slug>": {...}}}')
    parser.add_argument("--seed", type=int, default=0, help="seed of the failure-rate RNG (default 0)")
    parser.add_argument("--port-file", help="write the bound port to this file once listening")
    parser.add_argument("--no-uvloop", action="store_true", help="use the default asyncio event loop")
    return parser.parse_args(argv)


def _run(coro: Coroutine[Any, Any, None], use_uvloop: bool) -> None:
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            uvloop.run(coro)
            return
    asyncio.run(coro)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = SimulatorConfig.load(args.config) if args.config else SimulatorConfig.empty()
    except SettingsError as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        return 2
    try:
        _run(serve(args.host, args.port, Registry(config, seed=args.seed), args.port_file), not args.no_uvloop)
    except OSError as exc:
        print(f"simulator: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
