"""`kassa dev`: the whole platform on one machine, under one supervisor.

PostgreSQL (embedded) and the Temporal dev server keep their data in the data folder; the
acquirer, the worker and the api run as child processes sharing one environment. Every line a
child prints is re-printed under its name. Ctrl-C stops the children in reverse order, then
PostgreSQL; nothing is lost.
"""

import asyncio
import ctypes
import os
import shutil
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client

from cli.embedded import StartError, database_url, postgres_log, stop_postgres, temporal_dev_command
from cli.seed import (
    DEMO_CATALOG,
    progress_bar,
    seed_category_tree,
    seed_demo_catalog,
    seed_generated,
)
from kassa.db import make_engine, migrate
from kassa.settings import SECRET_NAMES, Settings

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
STARTUP_SECONDS = 60  # a cold first start: initdb, Temporal's schema, Python imports
# SIGTERM's grace before SIGKILL: more than the api's (requests in flight) and the worker's own.
STOP_SECONDS = 30
PR_SET_PDEATHSIG = 1
DEV_PRODUCTS = 5_000  # generated products `kassa dev` seeds besides the demo ones: enough to search
NAME_WIDTH = 8

T = TypeVar("T")


def say(line: str) -> None:
    print(line, flush=True)


def complain(line: str) -> None:
    print(f"kassa: {line}", file=sys.stderr, flush=True)


def prefixed(name: str, line: str) -> str:
    return f"{name:<{NAME_WIDTH}} | {line}"


def run(settings: Settings) -> int:
    """Everything until the user stops it; returns the exit code. Settings carry the secrets."""
    check_ports_free(settings)
    log_offset = _size(postgres_log(settings.data_dir))
    url = database_url(settings)
    apply_migrations(url)
    seed(url, DEV_PRODUCTS)
    return asyncio.run(_supervise(settings, url, log_offset))


def apply_migrations(url: str) -> None:
    migrate(url)
    say("migrations: applied")


def seed(url: str, products: int) -> None:
    """The category tree, the demo products and `products` generated ones."""

    async def seed_all(engine: AsyncEngine) -> tuple[int, int]:
        await seed_category_tree(engine)
        demo = await seed_demo_catalog(engine)
        generated = (
            await seed_generated(url, engine, products, progress_bar("seed")) if products else 0
        )
        return demo, generated

    demo, generated = run_with_engine(url, seed_all)
    say(f"seed: {len(DEMO_CATALOG)} demo products ({demo} new)")
    if products:
        say(f"seed: {products:,} generated products ({generated:,} new)")


def run_with_engine(url: str, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """Runs `work` on an engine of its own, for a one-off command."""

    async def with_engine() -> T:
        engine = make_engine(url, pool_size=1)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    return asyncio.run(with_engine())


def _ports(settings: Settings) -> list[tuple[str, str]]:
    """(what, its setting) for every port `kassa dev` listens on."""
    ports = [("api", "api_port"), ("acquirer", "acquirer_port")]
    metrics = [
        ("worker metrics", "worker_metrics_port"),
        ("worker's Temporal metrics", "temporal_metrics_port"),
    ]
    ports += [(what, setting) for what, setting in metrics if getattr(settings, setting)]
    if not settings.temporal_address:
        ports += [("temporal", "temporal_port"), ("temporal UI", "temporal_ui_port")]
    return ports


def check_ports_free(settings: Settings) -> None:
    seen: dict[int, str] = {}
    for what, setting in _ports(settings):
        port = getattr(settings, setting)
        if port in seen:
            raise StartError(
                f"port {port} is given to both {seen[port]} and {what} — {how_to_move(setting)}"
            )
        seen[port] = what
        if not _port_free(settings.host, port):
            raise StartError(
                f"port {port} ({what}) is in use — stop what uses it, or {how_to_move(setting)}"
            )


def how_to_move(setting: str) -> str:
    """`make run` passes the environment on, not flags: both ways are named."""
    variable, flag = f"KASSA_{setting.upper()}", f"--{setting.replace('_', '-')}"
    return f"set {variable} to a free port (e.g. {variable}=<port> make run) or pass {flag}"


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        # As the servers themselves bind: a closed connection lingering in TIME_WAIT is no conflict.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def child_environment(settings: Settings, url: str) -> dict[str, str]:
    """What every child shares: one database, one Temporal, the same secrets."""
    env = dict(
        os.environ,
        PYTHONUNBUFFERED="1",
        KASSA_DATABASE_URL=url,
        KASSA_TEMPORAL_ADDRESS=settings.temporal_target,
    )
    for name in SECRET_NAMES:
        secret = getattr(settings, name)
        assert secret, "settings come from get_settings(), which fills the secrets"
        env[f"KASSA_{name.upper()}"] = secret
    return env


@dataclass
class Child:
    name: str
    process: asyncio.subprocess.Process
    relay: asyncio.Task[None] = field(init=False)

    async def stop(self) -> None:
        """SIGTERM to its process group, SIGKILL if it is still there after STOP_SECONDS."""
        self._signal_group(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), STOP_SECONDS)
        except TimeoutError:
            self._signal_group(signal.SIGKILL)
            await self.process.wait()
        await self.relay

    def _signal_group(self, signum: int) -> None:
        # The group also holds anything the child started; it may all be gone already.
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """In the child before it runs: SIGTERM when the supervisor dies, even by SIGKILL (Linux).
    Else a `kill -9` of `kassa dev` would leave its children, in their own groups, running."""
    if not sys.platform.startswith("linux"):
        return None

    def arm() -> None:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # it died before the line above: nobody would tell us
            os._exit(1)

    return arm


def is_shutdown_noise(name: str, line: str) -> bool:
    """The Temporal dev server's warnings while it stops: its internal services lose each other
    on the way out ("Failed to poll for task.", "network dial error", a dozen or more each time).
    Our own worker has stopped polling by then; an error still shows."""
    return name == "temporal" and " level=WARN " in line


class Children:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.started: list[Child] = []
        self.stopping = False
        self.exited = asyncio.Event()
        self.first_exited: Child | None = None

    async def start(self, name: str, command: list[str]) -> None:
        process = await asyncio.create_subprocess_exec(
            *command,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            # Its own process group: the terminal's Ctrl-C reaches only the supervisor.
            process_group=0,
            preexec_fn=_die_with_parent(os.getpid()),
            limit=1 << 20,
        )
        child = Child(name, process)
        child.relay = asyncio.create_task(self._relay(child))
        self.started.append(child)

    async def _relay(self, child: Child) -> None:
        assert child.process.stdout
        hidden = 0
        async for raw in child.process.stdout:
            line = raw.decode(errors="replace").rstrip()
            if self.stopping and is_shutdown_noise(child.name, line):
                hidden += 1
                continue
            say(prefixed(child.name, line))
        if hidden:
            say(prefixed(child.name, f"({hidden} warnings of its own shutdown not shown)"))
        await child.process.wait()
        if not self.stopping and self.first_exited is None:
            self.first_exited = child
            self.exited.set()

    def exit_reason(self) -> str:
        assert self.first_exited
        name, code = self.first_exited.name, self.first_exited.process.returncode
        assert code is not None
        how = (
            f"was killed by {signal.Signals(-code).name}"
            if code < 0
            else f"exited with code {code}"
        )
        return f"{name} {how} — see its lines above"

    async def stop_all(self) -> None:
        self.stopping = True
        for child in reversed(self.started):
            await child.stop()


async def _supervise(settings: Settings, url: str, log_offset: int) -> int:
    postgres_done = asyncio.Event()
    postgres_lines = (
        None
        if settings.database_url
        else asyncio.create_task(
            _relay_log(postgres_log(settings.data_dir), log_offset, postgres_done)
        )
    )
    children = Children(child_environment(settings, url))
    serving = asyncio.create_task(_serve(children, settings))
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        # A stop interrupts whatever is under way, startup included; later ones change nothing.
        loop.add_signal_handler(signum, serving.cancel)
    try:
        code = await serving
    except asyncio.CancelledError:
        code = 0
    finally:
        say(f"stopping (up to {STOP_SECONDS} s a service)…")
        await children.stop_all()
        stop_postgres()
        postgres_done.set()
        if postgres_lines:
            await postgres_lines
    say(f"stopped; data kept in {settings.data_dir}")
    return code


async def _serve(children: Children, settings: Settings) -> int:
    """Starts the services and runs until one exits by itself (1); a stop cancels it."""
    try:
        await _start_services(children, settings)
    except StartError as error:
        complain(str(error))
        return 1
    _announce(settings)
    await children.exited.wait()
    complain(children.exit_reason())
    return 1


async def _start_services(children: Children, settings: Settings) -> None:
    if not settings.temporal_address:
        await children.start("temporal", temporal_dev_command(settings))
        # The worker connects once and gives up if Temporal is not there yet.
        await _wait_until_answers(children, "temporal", lambda: _temporal_ready(settings))
    for name in ("acquirer", "worker", "api"):
        await children.start(name, [sys.executable, "-m", "cli.main", name])
    async with httpx.AsyncClient(timeout=5) as http:
        await asyncio.gather(
            _wait_until_answers(
                children, "api", lambda: _healthy(http, _local_url(settings, settings.api_port))
            ),
            _wait_until_answers(
                children,
                "acquirer",
                lambda: _healthy(http, _local_url(settings, settings.acquirer_port)),
            ),
        )


async def _wait_until_answers(
    children: Children, what: str, probe: Callable[[], Awaitable[None]]
) -> None:
    deadline = asyncio.get_running_loop().time() + STARTUP_SECONDS
    while True:
        if children.exited.is_set():
            raise StartError(children.exit_reason())
        try:
            return await probe()
        except Exception:  # noqa: BLE001 — whatever a probe raises means "not up yet"
            if asyncio.get_running_loop().time() > deadline:
                raise StartError(
                    f"{what} did not answer within {STARTUP_SECONDS} s — see its lines above"
                ) from None
        await asyncio.sleep(0.25)


async def _temporal_ready(settings: Settings) -> None:
    client = await Client.connect(settings.temporal_target, namespace=settings.temporal_namespace)
    await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=settings.temporal_namespace)
    )


async def _healthy(http: httpx.AsyncClient, base_url: str) -> None:
    (await http.get(f"{base_url}/healthz")).raise_for_status()


def _local_url(settings: Settings, port: int) -> str:
    return f"http://{settings.host}:{port}"


def _announce(settings: Settings) -> None:
    api = _local_url(settings, settings.api_port)
    lines = [
        "",
        "Kassa is running:",
        f"  storefront   {api}/  (open it in a browser: search, cart, Pay Now)",
        f"  API          {api}  (docs at {api}/docs)",
        f"  acquirer     {_local_url(settings, settings.acquirer_port)}  (the sandbox bank)",
    ]
    if settings.psp != "sandbox":
        where = settings.psp_url or "its own API"
        lines.append(f"  payments     {settings.psp} at {where}, not the sandbox bank (KASSA_PSP)")
    if not settings.temporal_address:
        lines.append(f"  Temporal UI  http://127.0.0.1:{settings.temporal_ui_port}")
    if settings.worker_metrics_port:
        worker = _local_url(settings, settings.worker_metrics_port)
        lines.append(f"  metrics      {api}/metrics, worker {worker}/metrics")
    lines += [
        (
            "Create an admin in another terminal:"
            f"  {kassa_command()} users create-admin you@example.com   (it asks for the password)"
        ),
        f"Ctrl-C stops everything; the data stays in {settings.data_dir}",
        "",
    ]
    say("\n".join(lines))


def kassa_command() -> str:
    """How another terminal in this folder runs `kassa`: plain `kassa` if that is the one on PATH,
    else the console script beside this Python (`.venv/bin/kassa` after `make run`)."""
    script = Path(sys.executable).parent / "kassa"  # not resolved: a venv's python is a symlink
    on_path = shutil.which("kassa")
    if on_path and Path(on_path).resolve() == script.resolve():
        return "kassa"
    with suppress(ValueError):
        return str(script.relative_to(Path.cwd()))
    return str(script)


async def _relay_log(path: Path, offset: int, done: asyncio.Event) -> None:
    """Re-prints PostgreSQL's log file from `offset` as it grows, until `done` (then once more,
    so the shutdown lines show too)."""
    with path.open("rb") as log:
        log.seek(offset)
        pending = b""
        while True:
            finished = done.is_set()
            *lines, pending = (pending + log.read()).split(b"\n")
            for line in lines:
                say(prefixed("postgres", line.decode(errors="replace")))
            if finished:
                return
            with suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 0.3)
