"""Start the whole platform in the foreground; Ctrl-C stops all of it.

Used by ``make run``: migrates, loads the catalog, prepares the demo account and
prints its API key, then runs the provider simulator, the web server (Daphne),
a Celery worker and Celery beat, and stops every one of them when any exits or
on Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def manage(*args: str) -> str:
    result = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, check=True, capture_output=True, text=True)
    return result.stdout


def _stop(signum, frame) -> None:
    raise KeyboardInterrupt


def main() -> int:
    # Ctrl-C (and SIGTERM) stop everything, even when started where SIGINT is ignored.
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    port = os.environ.get("PORT", "8000")
    host = os.environ.get("HOST", "127.0.0.1")
    sim_port = os.environ.get("SIMULATOR_PORT", "8090")
    env = os.environ.copy()
    env.setdefault("PROVIDER_SIMULATOR_URL", f"http://127.0.0.1:{sim_port}")
    os.environ.update(env)

    print("migrating the database ...", flush=True)
    manage("migrate", "--noinput")
    print(manage("load_catalog").strip(), flush=True)
    demo = manage("demo_setup").strip().splitlines()
    key = demo[-1]

    commands = {
        "simulator": [PYTHON, "-m", "routing.simulator", "--host", "127.0.0.1", "--port", sim_port],
        "web": [PYTHON, "-m", "daphne", "-b", host, "-p", port, "openrouter_site.asgi:application"],
        "worker": [PYTHON, "-m", "celery", "-A", "openrouter_site", "worker", "--pool", "solo", "-l", "warning"],
        "beat": [PYTHON, "-m", "celery", "-A", "openrouter_site", "beat", "-l", "warning"],
    }
    processes: dict[str, subprocess.Popen] = {}
    try:
        for name, command in commands.items():
            processes[name] = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
        time.sleep(1.5)
        base = f"http://{host}:{port}"
        print(
            f"""
The platform is running.
  web + API:    {base}/            (API under {base}/api/v1)
  {demo[0]}
  API key:      {key}

Try it:
  curl {base}/api/v1/chat/completions -H "Authorization: Bearer {key}" \\
       -H "Content-Type: application/json" \\
       -d '{{"model": "openai/gpt-4o-mini", "messages": [{{"role": "user", "content": "Hello!"}}]}}'

Ctrl-C stops everything.
""",
            flush=True,
        )
        while True:
            for name, process in processes.items():
                if process.poll() is not None:
                    print(f"{name} exited with {process.returncode}; stopping the platform", flush=True)
                    return process.returncode or 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return 0
    finally:
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in processes.values():
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
