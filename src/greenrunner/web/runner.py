"""Background runs: worker threads take experiment ids from a queue and run the pipeline.

Requests only queue work, so none waits on a run. Each run is held by a lease of this
server process (:mod:`greenrunner.web.leases`), renewed by a heartbeat thread while the run
is queued or going; every write the run makes checks that the lease is still held. The
workers are daemon threads: a server that is stopped hard stops renewing, and once its
leases expire any server (another one on the same database, or this one restarted) marks
those runs ``interrupted``. A graceful stop sets an event that the progress callbacks
check, so a run ends at its next round, and marks its runs ``interrupted`` at once. Either
way ``resume`` runs it again with the same seed: the same evaluations in the same order,
each answered by the prediction cache when it was computed before.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from sqlalchemy import update

from greenrunner.errors import GreenRunnerError
from greenrunner.history import History
from greenrunner.web.db import Database, ExperimentRow, now
from greenrunner.web.leases import Clock, Leases, rowcount
from greenrunner.web.settings import WebSettings
from greenrunner.web.views import outcome

log = logging.getLogger(__name__)

STOPPED = "the server stopped while this experiment was running; resume it to finish"


class Stopped(Exception):  # noqa: N818 (a signal, not an error)
    """Raised from a progress callback when the server is shutting down."""


class LeaseLost(Exception):  # noqa: N818 (a signal, not an error)
    """Raised from a progress callback when this server no longer holds the run's lease
    (it stalled past the lease and another server marked the run interrupted): the run
    stops without writing anything more."""


def queued_progress() -> dict[str, Any]:
    return progress_dict("queued", detail="waiting for a free worker")


def progress_dict(phase: str, **values: Any) -> dict[str, Any]:
    """One shape for every phase, so a page can read any field at any time."""
    out: dict[str, Any] = {
        "phase": phase,
        "detail": "",
        "done_calls": 0,
        "budget_calls": None,
        "brute_force_calls": None,
        "spent": 0.0,
        "budget_limit": None,
        "unit": None,
        "fraction": 0.0,
        "pulls": {},
        "leader": None,
        "rounds": 0,
    }
    out.update(values)
    return out


class ProgressWriter:
    """The engine's progress callback: writes a snapshot at most every ``interval`` s
    (the last one always), and stops the run when the server is stopping."""

    def __init__(
        self,
        db: Database,
        experiment_id: int,
        interval: float,
        stop: threading.Event,
        leases: Leases,
    ) -> None:
        self.db = db
        self.leases = leases
        self.id = experiment_id
        self.interval = interval
        self.stop = stop
        self._last = 0.0
        self.names: list[str] = []  # the candidates, in the engine's order
        self.unit = "calls"
        self._history: History | None = None

    def write(self, progress: dict[str, Any], *, force: bool = False) -> None:
        if self.stop.is_set():
            raise Stopped
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        with self.db.session() as s:
            written = s.execute(
                update(ExperimentRow)
                .where(ExperimentRow.id == self.id, self.leases.held(self.id))
                .values(progress=progress)
            )
        if not rowcount(written):
            raise LeaseLost

    def phase(self, phase: str, detail: str = "") -> None:
        self.write(progress_dict(phase, detail=detail), force=True)

    def loading(self, stage: str, done: int, total: int, name: str) -> None:
        """open_real's progress: loading and measuring models, then each evaluation."""
        if stage == "evaluating":  # during the selection: the snapshot says more
            if self.stop.is_set():
                raise Stopped
            return
        detail = f"{stage} {done}/{total}" + (f": {name}" if name else "")
        self.write(progress_dict("loading models", detail=detail))

    def __call__(self, history: History) -> None:
        self._history = history
        self.write(snapshot(history, self.names, self.unit))

    def flush(self) -> None:
        """The final snapshot, whatever the interval (a short run may have written none)."""
        if self._history is not None:
            self.write(snapshot(self._history, self.names, self.unit), force=True)


def snapshot(history: History, names: list[str], unit: str) -> dict[str, Any]:
    """What a page shows while a run goes: calls and budget spent, pulls, the leader."""
    from greenrunner.result import ranking

    limit = history.budget_limit
    leader = None
    if history.pulls.any():
        leader = names[int(ranking(history)[0])]
    return progress_dict(
        "selecting",
        done_calls=int(history.calls),
        budget_calls=int(limit) if unit == "calls" else None,
        unit=unit,
        brute_force_calls=history.n_arms * history.n_samples,
        spent=float(history.spent),
        budget_limit=float(limit),
        fraction=min(1.0, float(history.spent) / limit) if limit > 0 else 1.0,
        pulls={n: int(p) for n, p in zip(names, history.pulls, strict=True)},
        leader=leader,
        rounds=int(history.rounds),
    )


class Runner:
    """``workers`` daemon threads running queued experiments one at a time each, and the
    heartbeat thread that renews this process's leases and reaps expired ones."""

    def __init__(
        self, db: Database, settings: WebSettings, *, start: bool = True, clock: Clock = now
    ) -> None:
        self.db = db
        self.settings = settings
        self.leases = Leases(db, settings.lease_seconds, clock=clock)
        self.stop = threading.Event()
        self._queue: queue.Queue[int | None] = queue.Queue()
        self._threads = [
            threading.Thread(target=self._work, name=f"greenrunner-run-{i}", daemon=True)
            for i in range(settings.workers if start else 0)
        ]
        if start:
            self._threads.append(
                threading.Thread(target=self._heartbeat, name="greenrunner-lease", daemon=True)
            )
        for thread in self._threads:
            thread.start()

    def submit(self, experiment_id: int) -> None:
        self._queue.put(experiment_id)

    def close(self, timeout: float = 10.0) -> None:
        """Stop taking work; a run in progress ends at its next progress report."""
        self.stop.set()
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        try:  # queued runs, and any still going: interrupted now, not after the lease
            if count := self.leases.release(STOPPED):
                log.warning("%d experiment(s) interrupted by the server stopping", count)
        except Exception:  # the database may be what failed; the leases expire anyway
            log.exception("could not release this server's runs")

    def _heartbeat(self) -> None:
        # A fifth of the lease: four renewals may fail (a locked or slow database) before
        # another server may take the runs over.
        interval = self.leases.seconds / 5
        while not self.stop.wait(interval):
            try:
                self.leases.renew()
                self.leases.reap()
            except Exception:  # a heartbeat must survive a database hiccup; it retries
                log.exception("lease heartbeat failed")

    def _work(self) -> None:
        while (experiment_id := self._queue.get()) is not None:
            if self.stop.is_set():
                break  # close() marks it interrupted
            try:
                self.run(experiment_id)
            except Exception:  # a worker must survive anything one run does
                log.exception("experiment %d: unexpected error in the worker", experiment_id)

    def run(self, experiment_id: int) -> None:
        """Run one experiment to done, failed or interrupted (never raises for user errors)."""
        from greenrunner.web.pipeline import execute

        writer = ProgressWriter(
            self.db, experiment_id, self.settings.progress_interval, self.stop, self.leases
        )
        values: dict[str, Any]
        try:
            result, summary = execute(self.db, self.settings, experiment_id, writer)
        except LeaseLost:
            log.warning("experiment %d: this server lost its lease; stopped", experiment_id)
            return
        except Stopped:
            values = {"status": "interrupted", "error": STOPPED}
        except GreenRunnerError as exc:
            log.info("experiment %d failed: %r", experiment_id, str(exc))  # user text: repr
            values = {"status": "failed", "error": str(exc)}
        except Exception as exc:
            log.exception("experiment %d: unexpected error", experiment_id)
            values = {
                "status": "failed",
                "error": f"internal error ({exc.__class__.__name__}: {exc}); this is a bug "
                "in GreenRunner, the server log has the details",
            }
        else:
            # The outcome goes in the small summary column, so lists never read the result.
            summary = {**summary, "outcome": outcome(result)}
            values = {"status": "done", "result": result, "summary": summary, "error": None}
        if not self.leases.finish(experiment_id, values):
            log.warning(
                "experiment %d: this server lost its lease; its %s is not written",
                experiment_id,
                values["status"],
            )
