"""The web app's tables (SQLAlchemy 2 ORM): repositories, datasets and experiments.

SQLite in the data folder by default; any SQLAlchemy URL works (``postgresql://...``).
Results, suggestions and progress are JSON columns: they are read whole and always in the
selection engine's own JSON shape, so they need no tables of their own. Lists never read
them: they select the small columns and the ``summary`` (which holds a run's outcome).

There are no migrations yet (``create_all`` only), so what a newer version needs is a new
table (``run_leases``), which ``create_all`` also adds to an older database, never a new
column on an existing one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String, Text, create_engine
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from greenrunner.errors import ConfigError

log = logging.getLogger(__name__)

STATUSES = ("staging", "running", "done", "failed", "interrupted")
# The largest id a URL may name: SQLite's integers are 64-bit signed, and no database's
# are wider. A larger id cannot exist and must not reach the driver (SQLite's raises
# OverflowError). ``Database.max_id`` is the bound of the database actually used.
MAX_ID = 2**63 - 1
# An Integer column is 32-bit outside SQLite (PostgreSQL's INTEGER, MySQL's INT), and
# PostgreSQL answers a larger bound value with "integer out of range", not with no row.
MAX_INT32 = 2**31 - 1
# Repository and dataset ids are String(64) keys.
MAX_KEY_CHARS = 64


def now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class RepositoryRow(Base):
    """A model repository: bundled (a replay, the demo zoo) or uploaded (a folder)."""

    __tablename__ = "repositories"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))  # replay, bundled-real, uploaded
    path: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    n_models: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class DatasetRow(Base):
    """A target dataset: the demo's bundled one or an uploaded folder."""

    __tablename__ = "datasets"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))  # bundled, uploaded
    path: Mapped[str] = mapped_column(Text)  # what open_dataset is given
    description: Mapped[str] = mapped_column(Text, default="")
    n_samples: Mapped[int | None] = mapped_column(Integer, nullable=True)
    classes: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class ExperimentRow(Base):
    """One selection from set-up to result; ``status`` is one of :data:`STATUSES`."""

    __tablename__ = "experiments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    repository_id: Mapped[str] = mapped_column(ForeignKey("repositories.id"))
    dataset_id: Mapped[str | None] = mapped_column(ForeignKey("datasets.id"), nullable=True)
    use_case: Mapped[str] = mapped_column(Text)
    strategy: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    budget: Mapped[float] = mapped_column(Float)
    budget_unit: Mapped[str] = mapped_column(String(8))
    seed: Mapped[int] = mapped_column(Integer)
    suggestion: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    weights: Mapped[dict[str, float]] = mapped_column(JSON)
    decision: Mapped[str] = mapped_column(String(16), default="accepted")
    progress: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # source, benchmark
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    runs: Mapped[int] = mapped_column(Integer, default=0)  # times started (resumes count)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    updated: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now, onupdate=now)


class RunLease(Base):
    """Which server process runs a ``running`` experiment, and until when that holds.

    The owner renews ``expires`` every few seconds (one UPDATE for all its runs); any
    server may mark a run whose lease expired ``interrupted``, never one whose owner is
    alive. A row exists exactly while its experiment is ``running``: the claim that sets
    ``running`` inserts it and the write that ends the run deletes it, in one transaction
    each (see :mod:`greenrunner.web.leases`).
    """

    __tablename__ = "run_leases"
    experiment_id: Mapped[int] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True
    )
    owner: Mapped[str] = mapped_column(String(128), index=True)
    renewed: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


def safe_url(url: str) -> str:
    """The URL with any password masked, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unreadable URL>"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets page requests read while a run writes progress; foreign keys are off by
    # default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Database:
    """An engine and a session factory; creates the tables on first use."""

    def __init__(self, url: str) -> None:
        shown = safe_url(url)
        try:
            parsed = make_url(url)
            sqlite = parsed.get_backend_name() == "sqlite"
            connect_args: dict[str, Any] = (
                # Request threads and run threads share the pool; SQLite waits for locks.
                {"check_same_thread": False, "timeout": 30} if sqlite else {}
            )
            self.engine: Engine = create_engine(url, connect_args=connect_args, future=True)
            self.max_id = MAX_ID if sqlite else MAX_INT32
            if sqlite:
                sa_event.listen(self.engine, "connect", _sqlite_pragmas)
            Base.metadata.create_all(self.engine)
        except (NoSuchModuleError, ModuleNotFoundError) as exc:
            raise ConfigError(
                f"--db {shown}: the database driver is unknown or not installed ({exc}); "
                "for PostgreSQL: pip install 'psycopg[binary]' and use postgresql+psycopg://..."
            ) from None
        except ArgumentError as exc:
            raise ConfigError(f"--db: cannot read the database URL {shown}: {exc}") from None
        except SQLAlchemyError as exc:
            raise ConfigError(
                f"cannot open the database {shown}: {exc.__class__.__name__}: {exc.args[0]}"
            ) from None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        log.info("database: %s", shown)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error."""
        with self._sessions.begin() as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()


def utc(value: datetime) -> datetime:
    """An aware UTC datetime; SQLite hands back naive datetimes, which are UTC here."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def iso(value: datetime) -> str:
    """ISO 8601 in UTC."""
    return utc(value).isoformat(timespec="seconds")


def valid_id(value: object, maximum: int = MAX_ID) -> bool:
    """An integer an id column can hold (1 to ``maximum``: ``Database.max_id``); bool is
    not an id."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= maximum


def valid_key(value: object) -> bool:
    """A repository or dataset id that can be looked up: text of at most 64 characters
    without control characters (PostgreSQL refuses NUL in text with an error)."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_KEY_CHARS
        and all(ch.isprintable() for ch in value)
    )
