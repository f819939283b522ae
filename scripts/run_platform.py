"""Start the whole platform in the foreground; Ctrl-C stops all of it.

Used by ``make run``: migrates, loads the catalog, prepares the demo account and
prints its API key, then runs the provider simulator, the web server (Daphne),
a Celery worker and Celery beat, and stops every one of them when any exits or
on Ctrl-C. Without ``STRIPE_SECRET_KEY`` it also runs the local Stripe server
(localstripe, ``STRIPE_PORT``, default 8420) and registers the platform's webhook
endpoint with it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def manage(*args: str) -> str:
    result = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, check=True, capture_output=True, text=True)
    return result.stdout


def _stop(signum, frame) -> None:
    raise KeyboardInterrupt


def wait_for(url: str, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def daphne_endpoint(host: str, port: str, backlog: int) -> str:
    """Daphne's listening socket with an explicit backlog (its ``-b/-p`` default is Twisted's 50)."""
    interface = host.strip("[]").replace(":", "\\:")
    return f"tcp:port={int(port)}:interface={interface}:backlog={backlog}"


def main() -> int:
    # Ctrl-C (and SIGTERM) stop everything, even when started where SIGINT is ignored.
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    port = os.environ.get("PORT", "8000")
    host = os.environ.get("HOST", "127.0.0.1")
    sim_port = os.environ.get("SIMULATOR_PORT", "8090")
    stripe_port = os.environ.get("STRIPE_PORT", "8420")
    # Pending connections the kernel queues before the server accepts them; a burst of more
    # than that waits on SYN retries (1 s, 3 s). The kernel caps it at net.core.somaxconn.
    backlog = int(os.environ.get("LISTEN_BACKLOG", "2048"))
    local_stripe = not os.environ.get("STRIPE_SECRET_KEY")
    env = os.environ.copy()
    env.setdefault("PROVIDER_SIMULATOR_URL", f"http://127.0.0.1:{sim_port}")
    if local_stripe:
        env.setdefault("STRIPE_API_BASE", f"http://127.0.0.1:{stripe_port}")
    os.environ.update(env)

    print("migrating the database ...", flush=True)
    manage("migrate", "--noinput")
    print(manage("load_catalog").strip(), flush=True)
    demo = manage("demo_setup").strip().splitlines()
    key = demo[-1]

    commands = {
        "simulator": [PYTHON, "-m", "routing.simulator", "--host", "127.0.0.1", "--port", sim_port],
        "web": [PYTHON, "-m", "daphne", "-e", daphne_endpoint(host, port, backlog), "openrouter_site.asgi:application"],
        "worker": [PYTHON, "-m", "celery", "-A", "openrouter_site", "worker", "--pool", "solo", "-l", "warning"],
        "beat": [PYTHON, "-m", "celery", "-A", "openrouter_site", "beat", "-l", "warning"],
    }
    var = Path(env.get("VAR_DIR", ROOT / "var"))
    if local_stripe:
        commands["stripe"] = [
            PYTHON, "scripts/localstripe_server.py", "--port", stripe_port, "--store", str(var / "localstripe.pickle"),
        ]
    processes: dict[str, subprocess.Popen] = {}
    try:
        for name, command in commands.items():
            output = open(var / "localstripe.log", "ab") if name == "stripe" else None  # its access log is chatty
            processes[name] = subprocess.Popen(
                command, cwd=ROOT, env=env, start_new_session=True, stdout=output, stderr=output
            )
        time.sleep(1.5)
        base = f"http://{host}:{port}"
        stripe_line = "Stripe:       real Stripe (STRIPE_SECRET_KEY)"
        if local_stripe:
            if not wait_for(f"{env['STRIPE_API_BASE']}/js.stripe.com/v3/"):
                print("localstripe did not start; see var/localstripe.log", flush=True)
                return 1
            print(manage("stripe_webhook_register", f"http://127.0.0.1:{port}/billing/webhooks/stripe").strip(), flush=True)
            stripe_line = (
                f"Stripe:       localstripe at {env['STRIPE_API_BASE']} (test card 4242424242424242, any future date, any CVC)"
            )
        print(
            f"""
The platform is running.
  web + API:    {base}/            (API under {base}/api/v1)
  credits page: {base}/settings/credits
  {demo[0]}
  API key:      {key}
  {stripe_line}

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
