"""A persistent cache of predictions and measurements, so no inference is paid for twice.

What is stored is the predicted model class per sample (the argmax), not whether it was
right: correctness is recomputed on every run from the current labels and label map. A
prediction is filed under (model key, dataset fingerprint, view, sample id), and each part
covers what can change that argmax:

- the model key (:func:`greenrunner.adapters.base.cache_key`) hashes every field of the
  model's spec that can change its scores, derived from the dataclass itself: the whole
  preprocessing (size, resize, crop, channels, mean, std, layout, interpolation), the
  class list (a prediction is an index into it), format, builder and its arguments (each
  value tagged with its type), weights id; the content of the model file, of every
  external-data file its ONNX graph refers to and of a torchvision model's checkpoint in
  the torch cache; the builder's code (its module's source, its package's installed
  version, every .py file of a package of the user's own); the versions of the back-end,
  torchvision, Pillow and numpy; and GreenRunner's own ``CODE_VERSION`` for decoding,
  preprocessing and adapters. Measurements (size, MACs per sample, which depend on the
  input size) are filed under the same key;
- the dataset fingerprint hashes the files' (or arrays') content, labels and class names;
- the view names the logit restriction (``--restrict-logits`` with the label map's set of
  allowed classes), which can change the argmax; an unrestricted label map cannot, so
  editing it reuses the predictions and scores them anew.

Keys made before this scheme never equal a new one, so old entries simply miss and are
recomputed. SQLite gives atomic, incremental writes: a run killed mid-way keeps what it
had computed, and concurrent runs do not corrupt the file.

The file itself is not trusted: its tables are checked when it is opened (a file that is
not SQLite, or whose tables are not this cache's, is refused with what to do), every
prediction read back must be an integer class index in [0, n_classes) for a sample asked
for, once, and every measurement finite and non-negative; anything else is logged and
recomputed, never served. A read that SQLite refuses is a miss with a warning; a write it
refuses is a :class:`ConfigError` naming the file.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from greenrunner.adapters.base import Measurements
from greenrunner.errors import ConfigError

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    model TEXT NOT NULL, data TEXT NOT NULL, view TEXT NOT NULL,
    sample INTEGER NOT NULL, pred INTEGER NOT NULL,
    PRIMARY KEY (model, data, view, sample)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS measurements (
    model TEXT PRIMARY KEY, size_bytes INTEGER NOT NULL, params INTEGER NOT NULL,
    macs REAL NOT NULL, note TEXT NOT NULL
);
"""
# PRAGMA user_version of the files this code writes. Files made before it was set (0) have
# the same tables and are stamped when opened; a higher one was made by a newer GreenRunner.
SCHEMA_VERSION = 1


def _columns(db: sqlite3.Connection, table: str) -> list[tuple[object, ...]]:
    """(name, type, not null, primary-key position) of each column, in order."""
    return [
        (r[1], str(r[2]).upper(), r[3], r[5]) for r in db.execute(f"PRAGMA table_info({table})")
    ]


def _expected_tables() -> dict[str, list[tuple[object, ...]]]:
    db = sqlite3.connect(":memory:")
    try:
        db.executescript(_SCHEMA)
        names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {name: _columns(db, name) for name in names}
    finally:
        db.close()


_TABLES = _expected_tables()


def cache_home() -> Path:
    """``$GREENRUNNER_CACHE``, else ``$XDG_CACHE_HOME/greenrunner``, else ~/.cache/greenrunner."""
    if env := os.environ.get("GREENRUNNER_CACHE"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "greenrunner"


class PredictionCache:
    """Predictions (model class index per sample) and model measurements in one SQLite file."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or cache_home() / "cache.sqlite"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"cannot open the cache {self.path}: {exc}; set GREENRUNNER_CACHE to a "
                "writable folder or pass --no-cache"
            ) from None
        try:
            self._check_schema()
        except BaseException:
            self._db.close()
            raise

    def _refuse(self, why: str) -> ConfigError:
        return ConfigError(
            f"the cache {self.path} {why}; delete it (it only saves time: everything in it "
            "is recomputed), set GREENRUNNER_CACHE to another folder, or pass --no-cache"
        )

    def _check_schema(self) -> None:
        """Create the tables in a new file; refuse one whose tables are not this cache's."""
        try:
            version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
            names = {
                r[0]
                for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")
                if not str(r[0]).startswith("sqlite_")
            }
            found = {name: _columns(self._db, name) for name in names & set(_TABLES)}
        except sqlite3.OperationalError as exc:  # locked beyond the timeout, unreadable
            raise ConfigError(
                f"cannot open the cache {self.path}: {exc}; set GREENRUNNER_CACHE to another "
                "folder or pass --no-cache"
            ) from None
        except sqlite3.DatabaseError as exc:  # not SQLite at all, or a damaged file
            raise self._refuse(f"is not a GreenRunner cache (SQLite says: {exc})") from None
        if version > SCHEMA_VERSION:
            raise self._refuse(
                f"was written by a newer GreenRunner (schema {version}; this one reads "
                f"{SCHEMA_VERSION})"
            )
        foreign = sorted(names - set(_TABLES))
        if foreign:
            raise self._refuse(
                f"is not a GreenRunner cache: it has table(s) {', '.join(map(repr, foreign))}"
            )
        for name, columns in found.items():
            if columns != _TABLES[name]:
                described = ", ".join(f"{c[0]!r} {c[1]}" for c in columns)
                raise self._refuse(
                    f"is not a GreenRunner cache, or is damaged: its table {name} has "
                    f"columns ({described})"
                )
        try:
            self._db.executescript(_SCHEMA)
            if version < SCHEMA_VERSION:
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            if found.keys() != _TABLES.keys():  # the tables could not even be made
                raise ConfigError(
                    f"cannot open the cache {self.path}: {exc}; set GREENRUNNER_CACHE to a "
                    "writable folder or pass --no-cache"
                ) from None
            # A read-only file with every table: reads work; a write will say why not.

    def close(self) -> None:
        self._db.close()

    # A cache travels to remote workers (the Ray executor) as its path: each process opens
    # its own connection, and SQLite serialises their writes to the one file.
    def __getstate__(self) -> dict[str, Path]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Path]) -> None:
        self.__init__(state["path"])  # type: ignore[misc]

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        try:
            with self._db:  # commits on success, rolls back on error
                yield self._db
        except sqlite3.Error as exc:
            raise ConfigError(
                f"cannot write to the cache {self.path}: {exc}; make it writable (or free "
                "space), set GREENRUNNER_CACHE to another folder, or pass --no-cache"
            ) from None

    def get(
        self,
        model: str,
        data: str,
        view: str,
        samples: np.ndarray,
        n_classes: int | None = None,
    ) -> dict[int, int]:
        """Cached predictions for the given samples (absent ones are left out). Each must
        be an integer class index (below ``n_classes`` when given) for a sample asked for,
        once; if any read back is not, none is served (a warning says so) and the caller
        computes them all again, overwriting the damaged entries."""
        out: dict[int, int] = {}
        ids = [int(s) for s in samples]
        wanted = set(ids)
        damaged = 0
        try:
            for start in range(0, len(ids), 900):  # SQLite's bound-parameter limit
                chunk = ids[start : start + 900]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    "SELECT sample, pred FROM predictions WHERE model=? AND data=? AND view=? "
                    f"AND sample IN ({marks})",
                    (model, data, view, *chunk),
                )
                for sample, pred in rows:
                    if (
                        type(sample) is not int
                        or sample not in wanted
                        or sample in out
                        or type(pred) is not int
                        or pred < 0
                        or (n_classes is not None and pred >= n_classes)
                    ):
                        damaged += 1
                    else:
                        out[sample] = pred
        except sqlite3.Error as exc:
            log.warning("cannot read the cache %s (%s); computing the predictions", self.path, exc)
            return {}
        if damaged:
            classes = f"in [0, {n_classes})" if n_classes is not None else "non-negative"
            log.warning(
                "the cache %s holds %d damaged prediction(s) for model key %s (not an integer "
                "class index %s for a sample asked for, once); they are not served: "
                "computing these %d samples again",
                self.path,
                damaged,
                model,
                classes,
                len(ids),
            )
            return {}
        return out

    def put(self, model: str, data: str, view: str, samples: np.ndarray, preds: np.ndarray) -> None:
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO predictions VALUES (?, ?, ?, ?, ?)",
                [(model, data, view, int(s), int(p)) for s, p in zip(samples, preds, strict=True)],
            )

    def measurements(self, model: str) -> Measurements | None:
        """The measurements filed under ``model``, or None when absent or not valid
        (counts that are not non-negative integers, MACs not finite and non-negative: a
        warning says so, and the model is measured again)."""
        try:
            row = self._db.execute(
                "SELECT size_bytes, params, macs, note FROM measurements WHERE model=?", (model,)
            ).fetchone()
        except sqlite3.Error as exc:
            log.warning("cannot read the cache %s (%s); measuring the model", self.path, exc)
            return None
        if row is None:
            return None
        size, params, macs, note = row
        if (
            type(size) is int
            and size >= 0
            and type(params) is int
            and params >= 0
            and type(macs) in (int, float)
            and math.isfinite(macs)
            and macs >= 0
            and type(note) is str
        ):
            return Measurements(size, params, float(macs), note)
        log.warning(
            "the cache %s holds damaged measurements for model key %s (size %r, params %r, "
            "MACs %r); they are not served: measuring the model again",
            self.path,
            model,
            size,
            params,
            macs,
        )
        return None

    def put_measurements(self, model: str, m: Measurements) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO measurements VALUES (?, ?, ?, ?, ?)",
                (model, m.size_bytes, m.params, m.macs, m.macs_note),
            )
