"""The experiment store: a run's settings and every observation, committed as they arrive.

One SQLite file (WAL mode) holds experiments (the settings that re-run them, the source's
fingerprints, the status, the result once done) and observations ((experiment, model,
sample) -> correct, one row each). A run killed mid-way keeps every observation committed
before the kill; :class:`greenrunner.evaluation.recording.RecordingExecutor` answers those
from here when the experiment is resumed, and the seeded engine asks for the same pulls in
the same order, so the resumed run ends where an uninterrupted one would.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from greenrunner.errors import ConfigError

# PRAGMA application_id: marks the file as a GreenRunner store ("GRST").
APPLICATION_ID = 0x47525354
SCHEMA_VERSION = 1
RUNNING, DONE = "running", "done"

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS experiments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL,
    finished TEXT,
    status TEXT NOT NULL CHECK (status IN ('{RUNNING}', '{DONE}')),
    settings TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    result TEXT
);
CREATE TABLE IF NOT EXISTS observations (
    experiment INTEGER NOT NULL REFERENCES experiments(id),
    model TEXT NOT NULL,
    sample INTEGER NOT NULL,
    correct INTEGER NOT NULL CHECK (correct IN (0, 1)),
    PRIMARY KEY (experiment, model, sample)
) WITHOUT ROWID;
"""
_CHUNK = 900  # below SQLite's bound-parameter limit


class StoreError(ConfigError):
    """The store cannot be opened, or does not hold what was asked for."""


def damaged(experiment: int, path: Path | str, why: str) -> StoreError:
    """An experiment whose stored record cannot be used as it is (edited by hand or by
    another program): what is wrong, and what to do."""
    return StoreError(
        f"experiment {experiment} in {path} is damaged: {why}; start a new experiment "
        "(`greenrunner select ... --store PATH`)"
    )


@dataclass(frozen=True)
class Experiment:
    """One stored experiment. ``settings`` re-run it; ``fingerprint`` identifies its source."""

    id: int
    created: str
    status: str
    settings: dict[str, Any]
    fingerprint: dict[str, Any]
    result: dict[str, Any] | None

    @property
    def done(self) -> bool:
        return self.status == DONE


def read_only_message(path: Path) -> str:
    """Why a read-only store cannot be used, and what to do."""
    if path.exists() and not os.access(path, os.W_OK):
        return (
            f"the store {path} is read-only; GreenRunner records every observation in it as "
            f"it arrives, so it must be writable. Make it writable (chmod u+w {path}), or "
            "copy it to a writable folder and pass the copy to --store"
        )
    folder = path.parent
    return (
        f"the store {path} is in a read-only folder ({folder}); SQLite writes its journal "
        f"({path.name}-wal, {path.name}-shm) beside the store, so the folder must be "
        "writable. Make it writable, or copy the store to a writable folder and pass the "
        "copy to --store"
    )


def check_store_path(path: Path, *, create: bool) -> None:
    """Refuse a store path SQLite could not use, with the reason, before opening it."""
    if path.is_dir():
        raise StoreError(
            f"the store {path} is a folder, not a file; give --store a file path such as "
            f"{path / 'store.db'}"
        )
    if path.exists():
        if not path.is_file():
            raise StoreError(f"the store {path} is not a regular file; give a file path")
        if not os.access(path, os.R_OK):
            raise StoreError(
                f"the store {path} cannot be read (permission denied); make it readable "
                f"(chmod u+rw {path}), or give --store another file"
            )
        if not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK | os.X_OK):
            raise StoreError(read_only_message(path))
        return
    if not create:
        raise StoreError(
            f"no store at {path}; give the --store path the experiment was started with"
        )
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # the folders below it are created
    if not folder.is_dir():
        raise StoreError(
            f"cannot create the store {path}: {folder} is a file, not a folder; give --store "
            "a path in a folder"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StoreError(
            f"cannot create the store {path}: the folder {folder} is read-only; give --store "
            "a path in a writable folder"
        )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ExperimentStore:
    """Experiments and their observations in one SQLite file; safe to share across threads.

    ``create``: make the file if it does not exist (``select --store``); without it a
    missing file is an error (``resume``). ``timeout``: seconds to wait for another process
    that holds the store locked before giving up with a message saying so.
    """

    def __init__(self, path: str | Path, *, create: bool = True, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._lock = threading.Lock()
        check_store_path(self.path, create=create)
        self._db = self._connect()

    def _connect(self) -> sqlite3.Connection:
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=self.timeout, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise self._error(exc, "open") from None
        try:
            app_id = int(db.execute("PRAGMA application_id").fetchone()[0])
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master")]
        except sqlite3.Error as exc:
            db.close()
            raise self._error(exc, "open") from None
        if app_id != APPLICATION_ID and not (fresh or (app_id == 0 and not tables)):
            db.close()
            raise StoreError(self._foreign(tables))
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk before evaluate() returns, so a crash (even of the
            # machine) loses at most the batch in flight.
            db.execute("PRAGMA synchronous=FULL")
            with db:
                db.executescript(_SCHEMA)
                db.execute(f"PRAGMA application_id={APPLICATION_ID}")
                db.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
            version = int(
                db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
            )
        except sqlite3.Error as exc:
            db.close()
            raise self._error(exc, "set up") from None
        if version > SCHEMA_VERSION:
            db.close()
            raise StoreError(
                f"{self.path} was written by a newer GreenRunner (store schema {version}, this "
                f"one reads {SCHEMA_VERSION}); upgrade greenrunner"
            )
        return db

    def _foreign(self, tables: Sequence[str]) -> str:
        """Why an SQLite file of another program is refused (it is left untouched)."""
        shown = ", ".join(sorted(tables)[:6])
        # The web app's database (`greenrunner serve --db`) is the likeliest mix-up.
        hint = (
            " it looks like the database of `greenrunner serve`, which --store cannot share;"
            if {"experiments", "repositories"} <= set(tables)
            else ""
        )
        return (
            f"{self.path} is an SQLite file but not a GreenRunner store (it holds the tables "
            f"{shown});{hint} GreenRunner leaves it alone. Give --store a new file name, or the "
            "path of a store an earlier `select --store` or `run --store` created"
        )

    def _error(self, exc: OSError | sqlite3.Error, doing: str) -> StoreError:
        """A clear message for what SQLite or the file system said about the store."""
        path = self.path
        text = str(exc).lower()
        if isinstance(exc, sqlite3.Error) and ("locked" in text or "busy" in text):
            return StoreError(
                f"the store {path} is locked by another process (another greenrunner run, or "
                f"a program holding a transaction open on it) and stayed locked for "
                f"{self.timeout:g} s; wait for it to finish, or give --store another file"
            )
        if "readonly" in text or "read-only" in text:
            return StoreError(read_only_message(path))
        if "not a database" in text or "encrypted" in text:
            return StoreError(
                f"{path} is not a GreenRunner store: it is not an SQLite database ({exc}); "
                "give a new file name for --store, or the path of a store an earlier run "
                "created"
            )
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return StoreError(
            f"cannot {doing} the store {path}: {reason}; give --store a writable file path"
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> ExperimentStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                with self._db:  # one transaction: commits on success, rolls back on error
                    yield self._db
            except sqlite3.OperationalError as exc:  # locked, read-only, disk full
                raise self._error(exc, "write to") from None

    def create(self, settings: Mapping[str, Any], fingerprint: Mapping[str, Any]) -> int:
        """A new running experiment; returns its id."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO experiments (created, status, settings, fingerprint) "
                "VALUES (?, ?, ?, ?)",
                (_now(), RUNNING, _dumps(settings), _dumps(fingerprint)),
            )
        assert cur.lastrowid is not None
        return int(cur.lastrowid)

    def get(self, experiment: int) -> Experiment:
        with self._lock:
            row = self._db.execute(
                "SELECT id, created, status, settings, fingerprint, result FROM experiments "
                "WHERE id=?",
                (experiment,),
            ).fetchone()
        if row is None:
            known = self.ids()
            listed = ", ".join(map(str, known[-10:])) if known else "none yet"
            raise StoreError(
                f"no experiment {experiment} in {self.path} (its experiments: {listed}); "
                "check the id printed when the run started"
            )
        return self._experiment(experiment, row)

    def _experiment(self, experiment: int, row: Sequence[Any]) -> Experiment:
        """A stored row as an Experiment, or StoreError saying it is damaged: its JSON
        decoded (no NaN or Infinity, which this store never writes), of the right kinds."""
        decoded: dict[str, Any] = {}
        for column, text in (("settings", row[3]), ("fingerprint", row[4]), ("result", row[5])):
            if text is None and column == "result":
                decoded[column] = None
                continue
            try:
                decoded[column] = json.loads(text, parse_constant=_no_constant)
            except (ValueError, TypeError, RecursionError) as exc:
                why = str(exc) if isinstance(exc, ValueError) else type(exc).__name__
                raise damaged(
                    experiment, self.path, f"its {_COLUMNS[column]} not valid JSON ({why})"
                ) from None
        status = row[2]
        if status not in (RUNNING, DONE):
            raise damaged(experiment, self.path, f"its status is {status!r}")
        for column in ("settings", "fingerprint", "result"):
            value = decoded[column]
            if not isinstance(value, dict) and not (column == "result" and value is None):
                raise damaged(
                    experiment,
                    self.path,
                    f"its {_COLUMNS[column]} {_kind(value)}, not a JSON object",
                )
        result = decoded["result"]
        if status == DONE and result is None:
            raise damaged(experiment, self.path, "it is marked done but has no stored result")
        return Experiment(
            id=int(row[0]),
            created=str(row[1]),
            status=str(status),
            settings=decoded["settings"],
            fingerprint=decoded["fingerprint"],
            result=result if isinstance(result, dict) else None,
        )

    def ids(self) -> list[int]:
        with self._lock:
            return [int(r[0]) for r in self._db.execute("SELECT id FROM experiments ORDER BY id")]

    def lookup(self, experiment: int, model: str, samples: Sequence[int]) -> dict[int, bool]:
        """Stored outcomes of ``model`` on these samples (absent ones are left out)."""
        out: dict[int, bool] = {}
        ids = [int(s) for s in samples]
        with self._lock:
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                rows = self._db.execute(
                    "SELECT sample, correct FROM observations WHERE experiment=? AND model=? "
                    f"AND sample IN ({','.join('?' * len(chunk))})",
                    (experiment, model, *chunk),
                )
                out.update((int(s), bool(c)) for s, c in rows)
        return out

    def record_many(
        self, experiment: int, outcomes: Sequence[tuple[str, Sequence[int], np.ndarray]]
    ) -> None:
        """Store (model, sample ids, correct) outcomes in one transaction.

        A pair already stored keeps its first outcome: writing twice is harmless.
        """
        rows = [
            (experiment, model, int(s), int(bool(c)))
            for model, samples, correct in outcomes
            for s, c in zip(samples, correct, strict=True)
        ]
        with self._tx() as db:
            db.executemany("INSERT OR IGNORE INTO observations VALUES (?, ?, ?, ?)", rows)

    def record(
        self, experiment: int, model: str, samples: Sequence[int], correct: np.ndarray
    ) -> None:
        """Store one model's outcomes on some samples (see :meth:`record_many`)."""
        self.record_many(experiment, [(model, samples, correct)])

    def count(self, experiment: int) -> int:
        """Observations stored for the experiment."""
        with self._lock:
            row = self._db.execute(
                "SELECT count(*) FROM observations WHERE experiment=?", (experiment,)
            ).fetchone()
        return int(row[0])

    def finish(self, experiment: int, result: Mapping[str, Any]) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE experiments SET status=?, finished=?, result=? WHERE id=?",
                (DONE, _now(), _dumps(result), experiment),
            )


def _dumps(value: Mapping[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, allow_nan=False)


_COLUMNS = {
    "settings": "settings are",
    "fingerprint": "source fingerprint is",
    "result": "result is",
}


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number this store writes")


def result_problem(data: Mapping[str, Any]) -> str | None:
    """What in a stored result has the wrong kind of value (``"calls is 'many', not a
    whole number"``), or None. Fields this version does not know, and missing ones, are
    left to :meth:`SelectionResult.from_dict`, which calls them another version's."""
    from greenrunner.result import SelectionResult

    problem = _record_problem(data, SelectionResult, "")
    if problem is None and not data.get("top"):
        return "its top models are missing"
    return problem


def _record_problem(data: Any, cls: type, where: str) -> str | None:
    import dataclasses
    import typing

    if not isinstance(data, Mapping):
        return f"{where or 'the result'} is {_kind(data)}, not a JSON object"
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        name = f"{where}.{f.name}" if where else f.name
        problem = _value_problem(data[f.name], hints[f.name], name)
        if problem is not None:
            return problem
    return None


def _value_problem(value: Any, hint: Any, where: str) -> str | None:
    """Whether ``value`` (decoded JSON) fits the annotation ``hint``; the problem if not."""
    import dataclasses
    import math
    import types
    import typing

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return None
    if origin in (typing.Union, types.UnionType):
        problems = [_value_problem(value, a, where) for a in args]
        return None if any(p is None for p in problems) else next(p for p in problems if p)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _record_problem(value, hint, where)
    if origin is list:
        if not isinstance(value, list):
            return f"{where} is {_kind(value)}, not a list"
        for i, item in enumerate(value):
            problem = _value_problem(item, args[0], f"{where}[{i}]")
            if problem is not None:
                return problem
        return None
    if origin is dict:
        if not isinstance(value, dict):
            return f"{where} is {_kind(value)}, not a JSON object"
        for key, item in value.items():
            problem = _value_problem(item, args[1], f"{where}[{key!r}]")
            if problem is not None:
                return problem
        return None
    wanted = _SCALARS.get(hint)
    if wanted is None:
        return None  # an annotation this check does not know: from_dict decides
    if hint is type(None):
        fits = value is None
    elif hint is bool:
        fits = isinstance(value, bool)
    elif hint is int:
        fits = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        fits = (
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        )
    else:
        fits = isinstance(value, str)
    return None if fits else f"{where} is {_kind(value)}, not {wanted}"


_SCALARS: dict[Any, str] = {
    type(None): "null",
    bool: "true or false",
    int: "a whole number",
    float: "a finite number",
    str: "text",
}


def _kind(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"a {type(value).__name__}"


def replay_fingerprint(names: Sequence[str], correct: np.ndarray, metadata: str) -> dict[str, Any]:
    """Identifies a replay by its content: model names, their metadata and the matrix."""
    import hashlib

    h = hashlib.sha256(metadata.encode())
    h.update(np.ascontiguousarray(correct, dtype=bool).tobytes())
    h.update(repr(correct.shape).encode())
    return {"kind": "replay", "models": list(names), "content": h.hexdigest()[:24]}


def real_fingerprint(data: str, models: Mapping[str, str]) -> dict[str, Any]:
    """Identifies real models and data: the dataset's and each model's content hash."""
    return {"kind": "models", "data": data, "models": dict(sorted(models.items()))}


def source_changes(stored: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """What differs between the stored source fingerprint and the current one ([] if none)."""
    if stored.get("kind") != now.get("kind"):
        return [f"the source was {stored.get('kind')} and is now {now.get('kind')}"]
    changes: list[str] = []
    for key in ("data", "content"):
        if stored.get(key) != now.get(key):
            changes.append("the target data changed" if key == "data" else "the replay changed")
    old, new = stored.get("models", {}), now.get("models", {})
    if isinstance(old, list) or isinstance(new, list):
        old, new = dict.fromkeys(old, ""), dict.fromkeys(new, "")
    gone = sorted(set(old) - set(new))
    added = sorted(set(new) - set(old))
    changed = sorted(k for k in set(old) & set(new) if old[k] != new[k])
    for label, names in (("missing", gone), ("new", added), ("changed", changed)):
        if names:
            changes.append(f"models {label}: {', '.join(names[:5])}")
    return changes


# The options of `select` and `run` that decide what a resumed run evaluates and writes.
SOURCE_OPTIONS = (
    "replay", "models", "data", "label_map", "restrict_logits", "trust", "no_cache", "batch_size",
    "max_image_pixels",
)  # fmt: skip
SELECTION_OPTIONS = ("strategy", "budget", "budget_unit", "param", "seed", "json", "report")
# Where and how it runs (executor, energy): kept when the command has them.
RUNTIME_OPTIONS = (
    "executor", "address", "cpus_per_model", "gpus_per_model", "energy", "country", "region",
)  # fmt: skip
_PATH_OPTIONS = ("replay", "models", "data", "label_map", "json", "report")
# Every key a stored experiment's settings may hold (settings_from_options writes them).
SETTINGS_KEYS = frozenset(
    {*SOURCE_OPTIONS, *SELECTION_OPTIONS, *RUNTIME_OPTIONS, "weights", "staging"}
)


def _absolute(value: Any, *, output: bool = False) -> Any:
    """A path that exists (or an output path) made absolute, so a resume from another
    folder finds it; a bundled name (objectnet-sim, torchvision) is kept as given."""
    if not isinstance(value, str) or not value:
        return value
    path = Path(value).expanduser()
    return str(path.resolve()) if output or path.exists() else value


def settings_from_options(
    options: Mapping[str, Any], weights: Mapping[str, float], staging: dict[str, Any] | None
) -> dict[str, Any]:
    """What a resume needs to re-run a selection: the source, the settled weights, the
    strategy, budget and seed, where to write, and the staging record of `run`."""
    out: dict[str, Any] = {}
    for key in (*SOURCE_OPTIONS, *SELECTION_OPTIONS):
        value = options.get(key)
        if key in _PATH_OPTIONS:
            value = _absolute(value, output=key in ("json", "report"))
        out[key] = value
    out.update({key: options[key] for key in RUNTIME_OPTIONS if key in options})
    out["weights"] = dict(weights)
    out["staging"] = staging
    return out
