"""A persistent cache of predictions and measurements, so no inference is paid for twice.

What is stored is the predicted model class per sample (the argmax), not whether it was
right: correctness is recomputed on every run from the current labels and label map. A
prediction is filed under (model key, dataset fingerprint, view, sample id), and each part
covers what can change that argmax:

- the model key (:func:`greenrunner.adapters.base.cache_key`) hashes every field of the
  model's spec that can change its scores, derived from the dataclass itself: the whole
  preprocessing (size, resize, crop, channels, mean, std, layout, interpolation), the
  class list (a prediction is an index into it), format, builder and its arguments,
  weights id; the content of the model file and of its external-data files; the versions
  of the back-end, torchvision, Pillow and numpy; and GreenRunner's own
  ``CODE_VERSION`` for decoding, preprocessing and adapters. Measurements (size, MACs per
  sample, which depend on the input size) are filed under the same key;
- the dataset fingerprint hashes the files' (or arrays') content, labels and class names;
- the view names the logit restriction (``--restrict-logits`` with the label map's set of
  allowed classes), which can change the argmax; an unrestricted label map cannot, so
  editing it reuses the predictions and scores them anew.

Keys made before this scheme (the weights alone) never equal a new one, so old entries
simply miss and are recomputed. SQLite gives atomic, incremental writes: a run killed
mid-way keeps what it had computed, and concurrent runs do not corrupt the file.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from greenrunner.adapters.base import Measurements
from greenrunner.errors import ConfigError

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
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"cannot open the cache {self.path}: {exc}; set GREENRUNNER_CACHE to a "
                "writable folder or pass --no-cache"
            ) from None

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
        with self._db:  # commits on success, rolls back on error
            yield self._db

    def get(self, model: str, data: str, view: str, samples: np.ndarray) -> dict[int, int]:
        """Cached predictions for the given samples (absent ones are left out)."""
        out: dict[int, int] = {}
        ids = [int(s) for s in samples]
        for start in range(0, len(ids), 900):  # SQLite's bound-parameter limit
            chunk = ids[start : start + 900]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                "SELECT sample, pred FROM predictions WHERE model=? AND data=? AND view=? "
                f"AND sample IN ({marks})",
                (model, data, view, *chunk),
            )
            out.update(rows)
        return out

    def put(self, model: str, data: str, view: str, samples: np.ndarray, preds: np.ndarray) -> None:
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO predictions VALUES (?, ?, ?, ?, ?)",
                [(model, data, view, int(s), int(p)) for s, p in zip(samples, preds, strict=True)],
            )

    def measurements(self, model: str) -> Measurements | None:
        row = self._db.execute(
            "SELECT size_bytes, params, macs, note FROM measurements WHERE model=?", (model,)
        ).fetchone()
        if row is None:
            return None
        return Measurements(int(row[0]), int(row[1]), float(row[2]), str(row[3]))

    def put_measurements(self, model: str, m: Measurements) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO measurements VALUES (?, ?, ?, ?, ?)",
                (model, m.size_bytes, m.params, m.macs, m.macs_note),
            )
