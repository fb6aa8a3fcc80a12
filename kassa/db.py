"""The database engine, sessions and migrations."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

MIGRATIONS = Path(__file__).parent / "migrations"


def sqlalchemy_url(database_url: str) -> str:
    """psycopg URIs (postgresql://…) as SQLAlchemy wants them (postgresql+psycopg://…)."""
    scheme, rest = database_url.split("://", 1)
    return f"postgresql+psycopg://{rest}" if scheme in ("postgres", "postgresql") else database_url


def make_engine(
    database_url: str,
    pool_size: int = 10,
    max_overflow: int | None = None,
    application_name: str = "kassa",
) -> AsyncEngine:
    """`max_overflow` connections beyond `pool_size` (as many again by default) are opened when
    needed and closed as soon as they are given back: under steady load above `pool_size` they
    are opened and closed all the time.

    A `SELECT 1` is sent each time a connection is taken from the pool, so one that PostgreSQL
    (or the network) dropped is replaced before use: a round trip for every take, which costs the
    api about a tenth of a flash-sale loser's CPU (README, "What each change bought"), and spares
    a request after every restart or failover. Connections are also replaced after half an hour,
    before a proxy's or firewall's idle timeout drops them unseen. `application_name` names the
    part in PostgreSQL's pg_stat_activity."""
    return create_async_engine(
        sqlalchemy_url(database_url),
        pool_size=pool_size,
        max_overflow=pool_size if max_overflow is None else max_overflow,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"application_name": application_name},
    )


@lru_cache
def _sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


@asynccontextmanager
async def session_scope(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """One transaction: committed when the block ends, rolled back if it raises."""
    async with _sessionmaker(engine)() as session, session.begin():
        yield session


@asynccontextmanager
async def autocommit_scope(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """One connection whose every statement commits as it runs: for checks that need no common
    snapshot, and for a statement that must hold its row locks only while it runs. Several such
    steps in one block take the pool once, not once each (under a crowd, each take is a queue)."""
    async with engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        async with AsyncSession(bind=autocommit, expire_on_commit=False) as session:
            yield session


def migrate(database_url: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(database_url).replace("%", "%%"))
    command.upgrade(config, "head")
