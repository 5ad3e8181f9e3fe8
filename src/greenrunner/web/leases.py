"""Run leases: a live run is never taken over, by a second server on the same database or
by a restart (the idea of Optuna's heartbeat).

Every server process has a random owner id. Claiming a run (start, resume) is one
transaction: a conditional UPDATE of the experiment's status (``staging``/``interrupted``/
``failed`` to ``running``, checked by its row count) and the INSERT of its lease, which
expires ``seconds`` later. The owner's heartbeat thread renews all its leases every few
seconds with one UPDATE, also while a run waits in the queue. Every write a run makes
(progress, the final status) is conditional on its lease still being held, so a server
that stalled past its lease and lost the run cannot overwrite the new owner's work.

Any server "reaps": it deletes expired leases and marks ``running`` experiments without a
lease ``interrupted`` (at start and on every heartbeat). Those are the runs of a server that
died (killed, crashed, its machine lost), after at most ``seconds``; they can then be
resumed anywhere. Plain SQLAlchemy Core with the clock on the server side, so it works on
SQLite and PostgreSQL alike; servers on different machines need clocks that agree to well
within the lease (NTP does).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, exists, select, update
from sqlalchemy.orm import Session

from greenrunner.web.db import Database, ExperimentRow, RunLease, now, utc

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

EXPIRED = (
    "the server running this experiment stopped renewing its lease (it was killed or lost "
    "its connection to the database); resume it to finish"
)


def new_owner() -> str:
    """``host:pid:random``: unique per server process; host and pid tell an operator which
    process holds a run, the random part keeps a reused pid from looking like its owner."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass(frozen=True)
class Holder:
    """Who holds a run's lease, as the API shows it."""

    owner: str
    renewed: datetime
    expires: datetime


def rowcount(result: object) -> int:
    """Rows an UPDATE or DELETE changed (typed Result objects do not declare it)."""
    return int(getattr(result, "rowcount", 0))


class Leases:
    """This server process's leases on ``db``; ``clock`` returns aware datetimes (tests
    pass a fake one), ``seconds`` is how long a lease lasts without renewal."""

    def __init__(
        self, db: Database, seconds: float, *, owner: str | None = None, clock: Clock = now
    ) -> None:
        if not seconds > 0:
            raise ValueError(f"a lease must last a positive number of seconds; got {seconds!r}")
        self.db = db
        self.seconds = float(seconds)
        self.owner = owner or new_owner()
        self._clock = clock

    def now(self) -> datetime:
        # Always UTC: SQLite stores datetimes as naive text and compares them as text.
        return utc(self._clock())

    def _expiry(self, at: datetime) -> datetime:
        return at + timedelta(seconds=self.seconds)

    def held(self, experiment_id: int) -> ColumnElement[bool]:
        """A WHERE condition: this process holds the lease of ``experiment_id``."""
        return exists(
            select(RunLease.experiment_id).where(
                RunLease.experiment_id == experiment_id, RunLease.owner == self.owner
            )
        )

    def claim(
        self, s: Session, experiment_id: int, allowed: tuple[str, ...], **values: Any
    ) -> bool:
        """Set ``experiment_id`` ``running`` (with ``values``) and give it a lease of ours,
        if its status is one of ``allowed``; in the caller's transaction, so both happen or
        neither. False when the status did not allow it (another request or server got
        there first)."""
        claimed = s.execute(
            update(ExperimentRow)
            .where(ExperimentRow.id == experiment_id, ExperimentRow.status.in_(allowed))
            .values(status="running", runs=ExperimentRow.runs + 1, **values)
        )
        if not rowcount(claimed):
            return False
        # A lease row of an experiment that was not running is stale (a crash between two
        # writes cannot leave one, but an old version or a manual edit might).
        s.execute(delete(RunLease).where(RunLease.experiment_id == experiment_id))
        at = self.now()
        s.add(
            RunLease(
                experiment_id=experiment_id, owner=self.owner, renewed=at, expires=self._expiry(at)
            )
        )
        s.flush()
        return True

    def renew(self) -> int:
        """Extend every lease of this process; the number renewed."""
        at = self.now()
        with self.db.session() as s:
            return rowcount(
                s.execute(
                    update(RunLease)
                    .where(RunLease.owner == self.owner)
                    .values(renewed=at, expires=self._expiry(at))
                )
            )

    def reap(self) -> int:
        """Mark ``interrupted`` the running experiments whose lease expired (or that have
        none); the number marked. Safe against a concurrent renewal: the DELETE re-checks
        each lease's expiry, and only experiments left without a lease are marked."""
        at = self.now()
        with self.db.session() as s:
            s.execute(delete(RunLease).where(RunLease.expires < at))
            orphan = ~exists(
                select(RunLease.experiment_id).where(RunLease.experiment_id == ExperimentRow.id)
            )
            marked = rowcount(
                s.execute(
                    update(ExperimentRow)
                    .where(ExperimentRow.status == "running", orphan)
                    .values(status="interrupted", error=EXPIRED)
                )
            )
        if marked:
            log.warning("%d experiment(s) whose server stopped are now interrupted", marked)
        return marked

    def finish(self, experiment_id: int, values: dict[str, Any]) -> bool:
        """Write a run's final status, result and progress and drop its lease, only if this
        process still holds it; False (and nothing written) when it was lost."""
        with self.db.session() as s:
            progress = s.scalar(
                select(ExperimentRow.progress).where(ExperimentRow.id == experiment_id)
            )
            progress = dict(progress or {})
            progress["phase"] = "finished" if values["status"] == "done" else values["status"]
            written = s.execute(
                update(ExperimentRow)
                .where(
                    ExperimentRow.id == experiment_id,
                    ExperimentRow.status == "running",
                    self.held(experiment_id),
                )
                .values(**values, progress=progress)
            )
            if not rowcount(written):
                return False
            s.execute(delete(RunLease).where(RunLease.experiment_id == experiment_id))
            return True

    def release(self, error: str) -> int:
        """At a graceful stop: mark this process's runs ``interrupted`` (also those still
        queued) and drop its leases, so any server may resume them at once."""
        with self.db.session() as s:
            mine = select(RunLease.experiment_id).where(RunLease.owner == self.owner)
            marked = rowcount(
                s.execute(
                    update(ExperimentRow)
                    .where(ExperimentRow.status == "running", ExperimentRow.id.in_(mine))
                    .values(status="interrupted", error=error)
                )
            )
            s.execute(delete(RunLease).where(RunLease.owner == self.owner))
        return marked


def holder(s: Session, experiment_id: int) -> Holder | None:
    """The lease of ``experiment_id``, if it has one."""
    row = s.get(RunLease, experiment_id)
    if row is None:
        return None
    return Holder(row.owner, utc(row.renewed), utc(row.expires))
