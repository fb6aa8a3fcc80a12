"""Kassa as production runs it, in separate processes that a test may kill: the Temporal dev
server (its state in a database file), the acquirer, the api and any number of workers, each
started with the `kassa` command. PostgreSQL is the session's embedded server, with a database
of the stack's own, so that the invariant checker sees this stack's orders and no others.

Used by the crash tests (tests/test_crashes.py) and the benchmark (bench/), which need the
worker as a process of its own: to kill it, and to measure what it costs.
"""

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from activities.auth import password_hasher
from activities.tokens import TokenPolicy, start_family
from cli.embedded import temporal_dev_command
from kassa.db import make_engine, migrate, session_scope
from kassa.settings import Settings
from kassa.tables import User
from tests.invariants import InvariantReport, check_invariants
from tests.products import stocked_product

STARTUP_SECONDS = 60  # a busy two-core machine: Python imports, Temporal's schema
STOP_SECONDS = 10
PORT_ATTEMPTS = 3
PASSWORD = "correct horse battery"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def database_of_its_own(server_url: str, name: str) -> str:
    """A new, migrated database on the server of `server_url`; its URL."""
    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    url = urlsplit(server_url)._replace(path=f"/{name}").geturl()
    migrate(url)
    return url


def settings_environment(settings: Settings) -> dict[str, str]:
    """Every setting as the KASSA_* variable that gives it to a child process."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    for name, value in settings.model_dump().items():
        if value is not None and not isinstance(value, list):
            env[f"KASSA_{name.upper()}"] = str(value)
    return env


def _stat(pid: int) -> list[str]:
    """/proc/<pid>/stat's fields after the command's name: [0] state, [1] parent, [11] utime…"""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int, ended_children: bool = False) -> float:
    """A running process's user + system CPU time so far; with `ended_children`, plus that of its
    children that ended and were waited for."""
    fields = _stat(pid)
    ticks = (
        int(fields[11])
        + int(fields[12])
        + (int(fields[13]) + int(fields[14]) if ended_children else 0)
    )
    return ticks / os.sysconf("SC_CLK_TCK")


def process_tree_cpu_seconds(pid: int) -> float:
    """A running process's CPU time so far with its children's: the live ones' and those that
    ended (a process waits for each, so their time is added to its own)."""
    total = cpu_seconds(pid, ended_children=True)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(_stat(int(stat.parent.name))[1]) == pid:
                total += cpu_seconds(int(stat.parent.name))
        except (FileNotFoundError, ProcessLookupError):
            pass  # a child that ended meanwhile: now in its parent's count
    return total


def postgres_cpu_seconds(pgdata: Path) -> float:
    """The PostgreSQL server's CPU time so far: the postmaster's and its backends'."""
    return process_tree_cpu_seconds(int((pgdata / "postmaster.pid").read_text().split()[0]))


@dataclass
class Part:
    """One process of the stack; its output goes to `log`."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        """kill -9: no shutdown, no draining, as when the machine dies."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.kill()

    def cpu_seconds(self) -> float:
        """User + system CPU time so far, with its children's (the api's processes, when
        KASSA_API_PROCESSES starts several), from /proc: the process is still running."""
        return process_tree_cpu_seconds(self.process.pid)

    def peak_memory_mb(self) -> float:
        """The resident set's high-water mark (VmHWM)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0


@dataclass
class Stack:
    settings: Settings
    engine: AsyncEngine
    logs: Path
    parts: dict[str, Part] = field(default_factory=dict)
    temporal: Client | None = None

    @classmethod
    async def start(
        cls, root: Path, server_url: str, workers: int = 1, api_processes: int = 1
    ) -> "Stack":
        """Temporal, the acquirer, the api (`api_processes` of it) and `workers` workers, in
        `root`, ready to serve."""
        await asyncio.to_thread(root.mkdir, parents=True, exist_ok=True)
        name = f"stack_{uuid.uuid4().hex[:10]}"
        url = await asyncio.to_thread(database_of_its_own, server_url, name)
        settings = Settings(
            env="test",
            data_dir=root,
            database_url=url,
            api_port=free_port(),
            api_processes=api_processes,
            acquirer_port=free_port(),
            task_queue=name,
            # Several workers run side by side here: none serves metrics, so no two fight for a
            # port.
            worker_metrics_port=0,
            temporal_metrics_port=0,
            password_time_cost=1,
            password_memory_cost=8,
            password_parallelism=1,
        ).with_secrets()
        stack = cls(settings, make_engine(url, pool_size=5), root / "logs")
        stack.logs.mkdir(exist_ok=True)
        try:
            for attempt in range(1, PORT_ATTEMPTS + 1):
                # A free port may be taken by another process before Temporal binds it: new ports,
                # again.
                port = free_port()
                stack.settings = settings.model_copy(
                    update={
                        "temporal_port": port,
                        "temporal_ui_port": free_port(),
                        "temporal_address": f"127.0.0.1:{port}",
                    }
                )
                try:
                    await stack.start_temporal()
                    break
                except RuntimeError:
                    if attempt == PORT_ATTEMPTS:
                        raise
            stack.spawn("acquirer", "acquirer")
            stack.spawn("api", "api")
            for number in range(1, workers + 1):
                stack.spawn(f"worker-{number}", "worker")
            await asyncio.gather(
                stack.answers("acquirer", stack.acquirer_url),
                stack.answers("api", stack.api_url),
                *(stack.worker_ready(f"worker-{number}") for number in range(1, workers + 1)),
            )
        except BaseException:
            await stack.stop()
            raise
        return stack

    @property
    def api_url(self) -> str:
        return self.settings.api_base_url

    @property
    def acquirer_url(self) -> str:
        return self.settings.acquirer_base_url

    @property
    def acquirer_db(self) -> Path:
        return self.settings.data_dir / "acquirer.sqlite3"

    def spawn(self, name: str, command: str) -> Part:
        """`kassa <command>` as the part `name` (a worker, the api…), replacing a dead one."""
        return self._launch(name, [sys.executable, "-m", "cli.main", command])

    def _launch(self, name: str, argv: list[str]) -> Part:
        log = self.logs / f"{name}.log"
        with log.open("ab") as output:
            process = subprocess.Popen(
                argv,
                env=settings_environment(self.settings),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.parts[name] = Part(name, process, log)
        return self.parts[name]

    async def start_temporal(self) -> None:
        """The dev server on its port, its state kept in `<root>/temporal.db` across restarts."""
        self._launch("temporal", temporal_dev_command(self.settings))
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            self._still_running("temporal")
            try:
                self.temporal = await Client.connect(self.settings.temporal_target)
                return
            except RuntimeError:
                if time.monotonic() > deadline:
                    log = self.parts["temporal"].log
                    raise TimeoutError(
                        f"Temporal did not answer in {STARTUP_SECONDS} s: see {log}"
                    ) from None
                await asyncio.sleep(0.25)

    async def restart_temporal(self) -> None:
        self.parts["temporal"].kill()
        await self.start_temporal()

    async def answers(self, name: str, url: str) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        async with httpx.AsyncClient(timeout=2) as http:
            while True:
                self._still_running(name)
                try:
                    if (await http.get(f"{url}/healthz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{name} did not answer in {STARTUP_SECONDS} s: see {self.parts[name].log}"
                    )
                await asyncio.sleep(0.1)

    async def worker_ready(self, name: str) -> None:
        """A worker is polling once it logged its start (it has no port to ask)."""
        part, deadline = self.parts[name], time.monotonic() + STARTUP_SECONDS
        offset = part.log.stat().st_size if part.log.exists() else 0
        while b"worker started" not in part.log.read_bytes()[offset:]:
            self._still_running(name)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} did not start in {STARTUP_SECONDS} s: see {part.log}")
            await asyncio.sleep(0.1)

    def _still_running(self, name: str) -> None:
        part = self.parts[name]
        if part.process.poll() is not None:
            raise RuntimeError(f"{name} exited with code {part.process.returncode}: see {part.log}")

    async def restart_worker(self, name: str) -> None:
        self.parts[name].kill()
        self.spawn(name, "worker")
        await self.worker_ready(name)

    async def stop(self) -> None:
        for name in [name for name in self.parts if name != "temporal"] + ["temporal"]:
            if name in self.parts:
                await asyncio.to_thread(self.parts[name].stop)
        await self.engine.dispose()

    # --- what a test needs from the stack ---------------------------------------------------------

    async def product(self, on_hand: int, price: int = 150_000) -> str:
        return await stocked_product(self.engine, on_hand, price)

    async def customers(self, count: int) -> list[str]:
        """Access tokens of `count` new customers (one password hash for all: argon2 is slow)."""
        password_hash = password_hasher(self.settings).hash(PASSWORD)
        users = [
            User(email=f"c-{uuid.uuid4().hex[:12]}@example.com", password_hash=password_hash)
            for _ in range(count)
        ]
        policy = TokenPolicy.from_settings(self.settings)
        async with session_scope(self.engine) as session:
            session.add_all(users)
            await session.flush()
            return [(await start_family(session, policy, user.id)).access_token for user in users]

    async def invariants(self, stocked: dict[str, int] | None = None) -> InvariantReport:
        return (await check_invariants(self.engine, self.acquirer_db, stocked)).raise_if_broken()
