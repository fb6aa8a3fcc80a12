"""`kassa dev` for real: the supervisor starts PostgreSQL, Temporal, the acquirer, the worker and
the api on free ports, and Ctrl-C stops every one of them; a `kill -9` of it takes its children
too."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from cli.dev import is_shutdown_noise, kassa_command
from cli.seed import DEMO_CATALOG

STARTUP_SECONDS = 60


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Short and under /tmp: PostgreSQL's socket lives in it, and socket paths are limited.
    path = Path(tempfile.mkdtemp(prefix="kd", dir="/tmp"))
    yield path / ".kassa"
    shutil.rmtree(path, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def kassa_dev(data_dir: Path, **ports: int) -> list[str]:
    flags = [
        arg for name, port in ports.items() for arg in (f"--{name.replace('_', '-')}", str(port))
    ]
    return [sys.executable, "-m", "cli.main", "dev", "--data-dir", str(data_dir), *flags]


def clean_environment() -> dict[str, str]:
    """The developer's own KASSA_* settings (a real database, say) must not leak into the test."""
    return {name: value for name, value in os.environ.items() if not name.startswith("KASSA_")}


def wait_for_text(path: Path, text: str, process: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        output = path.read_text(errors="replace")
        if text in output:
            return output
        assert process.poll() is None, f"kassa dev exited with {process.returncode}:\n{output}"
        time.sleep(0.2)
    raise AssertionError(
        f"no {text!r} within {STARTUP_SECONDS} s:\n{path.read_text(errors='replace')}"
    )


def answers(url: str) -> int:
    deadline = time.monotonic() + 10
    while True:
        try:
            return httpx.get(url, timeout=2).status_code
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def is_gone(process: psutil.Process) -> bool:
    # A zombie has stopped; the daemonized postgres waits for this container's init to reap it.
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def start_dev(data_dir: Path, ports: dict[str, int], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        return subprocess.Popen(
            kassa_dev(data_dir, **ports),
            stdout=output,
            stderr=subprocess.STDOUT,
            env=clean_environment(),
        )


def stop_dev(dev: subprocess.Popen[bytes]) -> int:
    """Ctrl-C, as from the terminal; SIGKILL only if the supervisor hangs."""
    dev.send_signal(signal.SIGINT)
    try:
        return dev.wait(timeout=45)
    finally:
        if dev.poll() is None:
            dev.kill()


PORT_NAMES = (
    "api_port",
    "acquirer_port",
    "temporal_port",
    "temporal_ui_port",
    "worker_metrics_port",
    "temporal_metrics_port",
)


def test_dev_runs_everything_and_ctrl_c_stops_it_all(data_dir: Path) -> None:
    ports = {name: free_port() for name in PORT_NAMES}
    log = data_dir.parent / "dev.log"
    dev = start_dev(data_dir, ports, log)
    try:
        started = wait_for_text(log, "Kassa is running", dev)
        assert f"API          http://127.0.0.1:{ports['api_port']}" in started
        # The admin command as another terminal in this folder runs it (make run: .venv/bin/kassa).
        assert f"  {kassa_command()} users create-admin you@example.com" in started
        assert f"storefront   http://127.0.0.1:{ports['api_port']}/" in started
        storefront = httpx.get(f"http://127.0.0.1:{ports['api_port']}/")
        assert storefront.status_code == 200 and "/static/app.js" in storefront.text
        assert f"seed: {len(DEMO_CATALOG)} demo products ({len(DEMO_CATALOG)} new)" in started
        assert httpx.get(f"http://127.0.0.1:{ports['api_port']}/healthz").status_code == 200
        assert httpx.get(f"http://127.0.0.1:{ports['acquirer_port']}/healthz").status_code == 200
        assert answers(f"http://127.0.0.1:{ports['temporal_ui_port']}/") == 200
        assert (
            "kassa_checkouts_started_total"
            in httpx.get(f"http://127.0.0.1:{ports['api_port']}/metrics").text
        )
        assert (
            "kassa_psp_request_seconds"
            in httpx.get(f"http://127.0.0.1:{ports['worker_metrics_port']}/metrics").text
        )
        assert answers(f"http://127.0.0.1:{ports['temporal_metrics_port']}/metrics") == 200
        children = psutil.Process(dev.pid).children(recursive=True)
        commands = {" ".join(child.cmdline()[-2:]) for child in children}
        assert commands >= {"cli.main api", "cli.main worker", "cli.main acquirer"}
        postgres = psutil.Process(int((data_dir / "pg" / "postmaster.pid").read_text().split()[0]))
    finally:
        code = stop_dev(dev)
    assert code == 0
    output = log.read_text()
    assert f"stopped; data kept in {data_dir}" in output
    # The worker stops polling before Temporal goes: no "Failed to poll" warnings on the way out.
    stopping = output[output.index("stopping (up to") :]
    assert "Failed to poll" not in stopping, stopping
    assert not [process for process in [*children, postgres] if not is_gone(process)]

    # A second start finds the database, the catalog and Temporal's state where they were.
    dev = start_dev(data_dir, ports, log)
    try:
        started = wait_for_text(log, "Kassa is running", dev)
        assert "first start" not in started
        assert f"seed: {len(DEMO_CATALOG)} demo products (0 new)" in started
        children = psutil.Process(dev.pid).children(recursive=True)
        postgres = psutil.Process(int((data_dir / "pg" / "postmaster.pid").read_text().split()[0]))
    finally:
        # No Ctrl-C this time: the supervisor is killed outright, and its children go with it.
        dev.kill()
        dev.wait()
    deadline = time.monotonic() + 45
    while [child for child in children if not is_gone(child)] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [child for child in children if not is_gone(child)]
    # PostgreSQL is a daemon of its own (the next `kassa dev` reuses it): stopped here by hand.
    postgres.send_signal(signal.SIGINT)


def test_dev_refuses_a_taken_port_before_starting_anything(data_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        api_port = taken.getsockname()[1]
        command = kassa_dev(
            data_dir,
            api_port=api_port,
            acquirer_port=free_port(),
            temporal_port=free_port(),
            temporal_ui_port=free_port(),
        )
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=30, env=clean_environment()
        )
    assert result.returncode == 1
    assert result.stderr == (
        f"kassa: port {api_port} (api) is in use — stop what uses it, or set KASSA_API_PORT to a"
        " free port (e.g. KASSA_API_PORT=<port> make run) or pass --api-port\n"
    )
    assert result.stdout == ""
    assert not (data_dir / "pg").exists()


def test_the_banner_names_a_kassa_that_runs_from_this_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make run` puts `kassa` in .venv/bin, which is not on PATH: the banner says .venv/bin/kassa;
    once the virtualenv is activated (its bin on PATH), plain `kassa`."""
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "kassa").touch(mode=0o755)
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert kassa_command() == ".venv/bin/kassa"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert kassa_command() == str(bin_dir / "kassa")
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    assert kassa_command() == "kassa"


def test_only_temporals_warnings_while_it_stops_are_shutdown_noise() -> None:
    poll = (
        'time=… level=WARN msg="Failed to poll for task." service=worker Namespace=temporal-system'
    )
    assert is_shutdown_noise("temporal", poll)
    assert not is_shutdown_noise("temporal", 'time=… level=ERROR msg="Unable to start server"')
    assert not is_shutdown_noise("worker", poll)
