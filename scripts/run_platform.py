"""Start the whole platform in the foreground; Ctrl-C (or SIGTERM) stops all of it.

Used by ``make run``: migrates, loads the catalog, prepares the demo account and
prints its API key, then runs the provider simulator, the web server (Daphne),
a Celery worker and Celery beat, and stops every one of them when any exits or
on a signal. Without ``STRIPE_SECRET_KEY`` it also runs the local Stripe server
(localstripe) and registers the platform's webhook endpoint with it, and allows
the simulated crypto processor: a development platform.

Ports: ``PORT`` (web, default 8000), ``SIMULATOR_PORT`` (default PORT + 90) and
``STRIPE_PORT`` (default PORT + 420), so two runs with different PORTs use
different simulators and localstripes. Every port must be free: a run never
talks to (or registers its webhook on) a server it did not start. The simulator
and localstripe listen on 127.0.0.1 only.

Secrets: with DEBUG off the settings refuse the public development secrets; a run
without them in the environment generates per-install ones once, in
``var/dev-secrets.json``.

Stopping is idempotent: the first SIGINT/SIGTERM/SIGHUP starts the shutdown and
later ones are ignored. The children are stopped in order, each with a grace
period (the web server first, so no new request arrives and its settlement writer
flushes; then the Celery worker and beat; then localstripe and the simulator); one
that outlives its grace period is killed, and only then is the exit status non-zero.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
sys.path.insert(0, str(ROOT))

from openrouter_site.install_secrets import install_secrets_ensure  # noqa: E402

# Stopped in this order, group by group; seconds each may take after SIGTERM before SIGKILL.
STOP_ORDER = (("web",), ("worker", "beat"), ("stripe", "simulator"))
GRACE_SECONDS = {"web": 15.0, "worker": 10.0, "beat": 5.0, "stripe": 5.0, "simulator": 5.0}
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stop:
    """Set by the first stop signal; later ones are only counted (the shutdown is never interrupted)."""

    signum: int | None = None
    ignored = 0

    @classmethod
    def handler(cls, signum, frame) -> None:
        if cls.signum is None:
            cls.signum = signum
        else:
            cls.ignored += 1

    @classmethod
    def requested(cls) -> bool:
        return cls.signum is not None


class StartupFailed(Exception):
    """A step before the platform runs failed; the message says which and why."""


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        if Stop.requested():  # the signal reached the command too
            return ""
        output = (result.stdout + result.stderr).strip().splitlines()
        raise StartupFailed(f"manage.py {' '.join(args)} failed:\n" + "\n".join(output[-15:]))
    return result.stdout


def port_setting(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        port = int(raw) if raw else default
    except ValueError:
        raise StartupFailed(f"{name}={raw!r} is not a port number") from None
    if not 0 < port < 65536:
        raise StartupFailed(f"{name}={port} is not a port number (1-65535); set {name} explicitly")
    return port


def port_taken(host: str, port: int) -> bool:
    family, kind, proto, _name, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError:
            return True
    return False


def wait_for(url: str, process: subprocess.Popen, timeout: float = 30.0) -> bool:
    """Until ``url`` answers while ``process`` (the server this run started) is alive."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not Stop.requested() and process.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return process.poll() is None
        except OSError:
            time.sleep(0.2)
    return False


def stop_all(processes: dict[str, subprocess.Popen]) -> bool:
    """SIGTERM each group in STOP_ORDER and wait for it; SIGKILL what outlives its grace. True if any was killed."""
    killed = False
    for group in STOP_ORDER:
        running = {name: processes[name] for name in group if name in processes and processes[name].poll() is None}
        for process in running.values():
            signal_group(process, signal.SIGTERM)
        for name, process in running.items():
            try:
                process.wait(timeout=GRACE_SECONDS[name])
            except subprocess.TimeoutExpired:
                print(f"{name} did not stop within {GRACE_SECONDS[name]:g} s; killing it", flush=True)
                signal_group(process, signal.SIGKILL)
                process.wait()
                killed = True
    return killed


def signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)  # each child leads its own process group (start_new_session)
    except ProcessLookupError:
        pass


def daphne_endpoint(host: str, port: str, backlog: int) -> str:
    """Daphne's listening socket with an explicit backlog (its ``-b/-p`` default is Twisted's 50)."""
    interface = host.strip("[]").replace(":", "\\:")
    return f"tcp:port={int(port)}:interface={interface}:backlog={backlog}"


def main() -> int:
    for signum in STOP_SIGNALS:
        signal.signal(signum, Stop.handler)
    processes: dict[str, subprocess.Popen] = {}
    status = 0
    try:
        status = run(processes)
    except StartupFailed as exc:
        print(f"make run: {exc}", file=sys.stderr, flush=True)
        status = 1
    finally:
        if Stop.requested():
            print("\nstopping ...", flush=True)
        if processes and stop_all(processes):
            status = status or 1
        if Stop.ignored:
            print(f"(ignored {Stop.ignored} more stop signal(s) while stopping)", flush=True)
    return status


def run(processes: dict[str, subprocess.Popen]) -> int:
    host = os.environ.get("HOST", "127.0.0.1")
    port = port_setting("PORT", 8000)
    sim_port = port_setting("SIMULATOR_PORT", port + 90)
    stripe_port = port_setting("STRIPE_PORT", port + 420)
    # Pending connections the kernel queues before the server accepts them; a burst of more
    # than that waits on SYN retries (1 s, 3 s). The kernel caps it at net.core.somaxconn.
    backlog = int(os.environ.get("LISTEN_BACKLOG", "2048"))
    local_stripe = not os.environ.get("STRIPE_SECRET_KEY")
    wanted = [("PORT", host, port), ("SIMULATOR_PORT", "127.0.0.1", sim_port)]
    if local_stripe:
        wanted.append(("STRIPE_PORT", "127.0.0.1", stripe_port))
    if len({p for _, _, p in wanted}) != len(wanted):
        raise StartupFailed("PORT, SIMULATOR_PORT and STRIPE_PORT must differ: " + ", ".join(f"{n}={p}" for n, _, p in wanted))
    for name, bind_host, number in wanted:
        if port_taken(bind_host, number):
            raise StartupFailed(
                f"port {number} ({name}) on {bind_host} is in use, perhaps by another `make run`; "
                f"stop it or choose another port, e.g. `make run PORT={port + 1}` (the simulator and localstripe "
                "ports follow PORT unless SIMULATOR_PORT / STRIPE_PORT are set)"
            )

    var = Path(os.environ.get("VAR_DIR", ROOT / "var"))
    env = os.environ.copy()
    for name, value in install_secrets_ensure(var).items():
        env.setdefault(name, value)
    env["PROVIDER_SIMULATOR_URL"] = env.get("PROVIDER_SIMULATOR_URL") or f"http://127.0.0.1:{sim_port}"
    if local_stripe:
        env["STRIPE_API_BASE"] = f"http://127.0.0.1:{stripe_port}"
        env.setdefault("CRYPTO_SIMULATED_ENABLED", "1")  # a development platform: localstripe, simulated USDC

    print("migrating the database ...", flush=True)
    manage(env, "migrate", "--noinput")
    catalog = "" if Stop.requested() else manage(env, "load_catalog")
    demo = [] if Stop.requested() else manage(env, "demo_setup").strip().splitlines()
    if Stop.requested():
        return 0
    print(catalog.strip(), flush=True)
    key = demo[-1]

    commands = {
        "simulator": [PYTHON, "-m", "routing.simulator", "--host", "127.0.0.1", "--port", str(sim_port)],
        "web": [PYTHON, "-m", "openrouter_site.daphne_server", "-e", daphne_endpoint(host, str(port), backlog), "openrouter_site.asgi:application"],
        "worker": [PYTHON, "-m", "celery", "-A", "openrouter_site", "worker", "--pool", "solo", "-l", "warning"],
        "beat": [PYTHON, "-m", "celery", "-A", "openrouter_site", "beat", "-l", "warning"],
    }
    if local_stripe:
        commands["stripe"] = [
            PYTHON, "scripts/localstripe_server.py", "--host", "127.0.0.1", "--port", str(stripe_port),
            "--store", str(var / "localstripe.pickle"),
        ]
    for name, command in commands.items():
        if Stop.requested():
            return 0
        output = open(var / "localstripe.log", "ab") if name == "stripe" else None  # its access log is chatty
        # Each child in its own session: a terminal's Ctrl-C reaches only this script, which stops them in order.
        processes[name] = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True, stdout=output, stderr=output)

    base = f"http://{host}:{port}"
    stripe_line = "Stripe:       real Stripe (STRIPE_SECRET_KEY)"
    if local_stripe:
        # Only on the localstripe this run started (its port was free, and it is still running).
        if not wait_for(f"{env['STRIPE_API_BASE']}/js.stripe.com/v3/", processes["stripe"]):
            if Stop.requested():
                return 0
            raise StartupFailed(f"localstripe did not start on port {stripe_port}; see {var / 'localstripe.log'}")
        print(manage(env, "stripe_webhook_register", f"http://127.0.0.1:{port}/billing/webhooks/stripe").strip(), flush=True)
        stripe_line = f"Stripe:       localstripe at {env['STRIPE_API_BASE']} (test card 4242424242424242, any future date, any CVC)"
    if not wait_for(f"{base}/accounts/login/", processes["web"], timeout=90):
        if Stop.requested():
            return 0
        raise StartupFailed(f"the web server did not start on {base}")
    print(
        f"""
The platform is running.
  web + API:    {base}/            (API under {base}/api/v1)
  credits page: {base}/settings/credits
  {demo[0]}
  API key:      {key}
  {stripe_line}
  simulator:    {env['PROVIDER_SIMULATOR_URL']}

Try it:
  curl {base}/api/v1/chat/completions -H "Authorization: Bearer {key}" \\
       -H "Content-Type: application/json" \\
       -d '{{"model": "openai/gpt-4o-mini", "messages": [{{"role": "user", "content": "Hello!"}}]}}'

Ctrl-C stops everything.
""",
        flush=True,
    )
    while not Stop.requested():
        for name, process in processes.items():
            if process.poll() is not None:
                print(f"{name} exited with {process.returncode}; stopping the platform", flush=True)
                return process.returncode or 1
        time.sleep(0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
