"""The `kassa` command: run the parts of Kassa, set up its database, manage its users.

Errors a user can fix are one line on stderr saying what to do next, never a traceback.
"""

import argparse
import getpass
import logging
import os
import sys
from collections.abc import Callable
from typing import NoReturn

from pydantic import ValidationError
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from activities.auth import create_admin, password_hasher
from cli import dev
from cli.embedded import StartError, database_url
from kassa.db import session_scope
from kassa.errors import DomainError
from kassa.logs import configure_logging
from kassa.settings import Settings, get_settings

# `kassa dev` flags, each overriding the KASSA_* setting of the same name.
DEV_FLAGS = {
    "data_dir": str,
    "api_port": int,
    "acquirer_port": int,
    "temporal_port": int,
    "temporal_ui_port": int,
    "hold_seconds": int,
    "worker_metrics_port": int,
    "temporal_metrics_port": int,
}
# On SIGTERM the api stops taking requests and gives those in flight this long to finish.
API_SHUTDOWN_SECONDS = 25


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.command
    try:
        return command(args)
    except KeyboardInterrupt:
        return 130
    except StartError as error:
        dev.complain(str(error))
        return 1
    except DomainError as error:
        dev.complain(f"{error.message} ({error.code})")
        return 2
    except OperationalError as error:
        reason = str(error.orig).strip().splitlines()[0]
        dev.complain(
            f"cannot reach the database ({reason}) — check KASSA_DATABASE_URL,"
            " or unset it for the embedded one"
        )
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kassa", description="Kassa, the checkout platform.")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    run_dev = commands.add_parser(
        "dev", help="run everything locally (embedded PostgreSQL and Temporal); Ctrl-C stops"
    )
    for name, kind in DEV_FLAGS.items():
        flag, metavar = f"--{name.replace('_', '-')}", "DIR" if kind is str else "N"
        run_dev.add_argument(
            flag, dest=name, type=kind, metavar=metavar, help=f"overrides KASSA_{name.upper()}"
        )
    run_dev.set_defaults(command=_dev)

    commands.add_parser("api", help="serve the gateway (FastAPI)").set_defaults(command=_api)
    commands.add_parser("worker", help="run the Temporal worker").set_defaults(command=_worker)
    commands.add_parser("acquirer", help="serve the sandbox acquirer").set_defaults(
        command=_acquirer
    )
    commands.add_parser("migrate", help="bring the database schema up to date").set_defaults(
        command=_migrate
    )
    seed = commands.add_parser(
        "seed", help="add the category tree and the demo catalog (never changes existing rows)"
    )
    seed.add_argument(
        "--products",
        type=_count,
        default=0,
        metavar="N",
        help="also N generated products (GEN-0000001…), e.g. 100000",
    )
    seed.set_defaults(command=_seed)

    users = commands.add_parser("users", help="manage accounts").add_subparsers(
        required=True, metavar="ACTION"
    )
    admin = users.add_parser(
        "create-admin",
        help="create an admin, or make an account an admin; the password is asked for (or read"
        " from KASSA_ADMIN_PASSWORD, or from standard input's first line), never an argument",
    )
    admin.add_argument("email")
    admin.set_defaults(command=_create_admin)
    return parser


def _settings() -> Settings:
    try:
        return get_settings()
    except ValidationError as error:
        problems = "; ".join(
            f"KASSA_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in error.errors()
        )
        raise StartError(f"{problems} — fix the setting") from None


def _dev(args: argparse.Namespace) -> int:
    # Through the environment, so that the children started by `kassa dev` see them too.
    for name in DEV_FLAGS:
        if (value := getattr(args, name)) is not None:
            os.environ[f"KASSA_{name.upper()}"] = str(value)
    return dev.run(_settings())


def _api(args: argparse.Namespace) -> int:
    import uvicorn  # the serving commands import only what they serve

    configure_logging()
    settings = _settings()
    # log_config=None keeps our JSON lines instead of uvicorn's own format (each of several
    # processes sets them up again: api.main.serve).
    uvicorn.run(
        "api.main:serve",
        factory=True,
        host=settings.host,
        port=settings.api_port,
        # Several processes share the port (uvicorn's supervisor restarts one that dies): a
        # flash sale's crowd keeps one Python process busy on one core.
        workers=settings.api_processes,
        log_config=None,
        # The app reads X-Forwarded-For from KASSA_TRUSTED_PROXIES only (api/main.py).
        proxy_headers=False,
        timeout_graceful_shutdown=API_SHUTDOWN_SECONDS,
        # libuv's event loop and a compiled HTTP parser (uvicorn[standard]): the api's own CPU per
        # Pay Now (README, "What each change bought").
        loop="uvloop",
        http="httptools",
    )
    _leave_past_temporal_threads()


def _worker(args: argparse.Namespace) -> int:
    import uvloop

    import worker

    configure_logging()
    # libuv's event loop, as the api's: the activities' database and provider calls are I/O.
    uvloop.run(worker.main(_settings()))
    _leave_past_temporal_threads()


def _leave_past_temporal_threads() -> NoReturn:
    """Exit 0 without interpreter finalisation. The Temporal SDK's Rust threads may still be
    winding down after the client is let go; finalising under them was seen to abort the process
    ("Fatal Python error: PyGILState_Release", exit 134) after a clean stop. By now activities are
    drained and requests answered."""
    logging.shutdown()  # flushes the log handlers
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _acquirer(args: argparse.Namespace) -> int:
    from acquirer.server import serve

    configure_logging()
    serve(_settings())
    return 0


def _migrate(args: argparse.Namespace) -> int:
    dev.apply_migrations(database_url(_settings()))
    return 0


def _seed(args: argparse.Namespace) -> int:
    dev.seed(database_url(_settings()), args.products)
    return 0


def _count(value: str) -> int:
    if not value.replace("_", "").isdigit() or not 0 <= int(value) <= 10_000_000:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a number of products from 0 to 10,000,000"
        )
    return int(value)


def _admin_password() -> str:
    """Never from the command line, where `ps` and the shell's history show it."""
    if password := os.environ.get("KASSA_ADMIN_PASSWORD"):
        return password
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    password = getpass.getpass("password: ")
    if getpass.getpass("again: ") != password:
        raise StartError("the two passwords differ — run it again")
    return password


def _create_admin(args: argparse.Namespace) -> int:
    settings = _settings()
    password = _admin_password()

    async def create(engine: AsyncEngine) -> str:
        async with session_scope(engine) as session:
            return (
                await create_admin(session, password_hasher(settings), args.email, password)
            ).email

    email = dev.run_with_engine(database_url(settings), create)
    print(f"admin {email} ready")
    return 0


if __name__ == "__main__":
    sys.exit(main())
