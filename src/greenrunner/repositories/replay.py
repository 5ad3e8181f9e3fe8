"""Replay repositories: recorded per-sample correctness of a set of models.

A folder with ``models.csv`` (column ``name`` required; ``size_mb``, ``mmacs``,
``params_m``, ``benchmark_accuracy`` (0-1) and ``license`` optional) and either
``correct.npy`` (N x K booleans, column j = row j of models.csv) or ``predictions.npy``
(N x K) with ``labels.npy`` (N). Bundled replays are found by name (``objectnet-sim``).
"""

from __future__ import annotations

import csv
import io
import math
import os
import stat
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from greenrunner.candidates import Candidate
from greenrunner.errors import DataError, GreenRunnerError
from greenrunner.evaluation.replay import ReplayEvaluator
from greenrunner.textfiles import os_reason, path_problem, read_text

OPTIONAL_COLUMNS = ("size_mb", "mmacs", "params_m", "benchmark_accuracy", "license")


@dataclass(frozen=True)
class ReplayRepository:
    name: str
    path: Path
    candidates: tuple[Candidate, ...]
    evaluator: ReplayEvaluator
    description: str = ""


def bundled_replays() -> dict[str, Path]:
    """Replays shipped inside the package, by name."""
    root = Path(str(resources.files("greenrunner"))) / "data" / "replays"
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if (p / "models.csv").is_file()}


def resolve_replay(where: str | Path) -> Path:
    if not isinstance(where, str | Path):
        raise DataError(
            f"replay must be a folder path or a bundled replay's name; got {where!r} "
            f"({type(where).__name__})"
        )
    problem = path_problem(str(where))
    if problem is not None:
        raise DataError(f"replay {str(where)[:80]!r} cannot be a path: {problem}")
    path = Path(where)
    try:
        if path.is_dir():
            return path
        exists = path.exists()
    except OSError as exc:
        raise DataError(f"replay {str(where)!r}: {os_reason(exc)}") from None
    bundled = bundled_replays()
    if str(where) in bundled:
        return bundled[str(where)]
    if exists:
        raise DataError(f"replay {str(where)!r} is a file; give the folder that holds models.csv")
    names = ", ".join(bundled) or "none installed"
    raise DataError(
        f"replay folder {str(where)!r} does not exist; give a folder with models.csv and "
        f"correct.npy, or a bundled replay ({names})"
    )


def _float(path: Path, row: int, column: str, raw: str) -> float | None:
    raw = raw.strip()
    if raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise DataError(f"{path}: row {row}, column {column}: {raw!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise DataError(
            f"{path}: row {row}, column {column}: must be finite and non-negative; got {raw!r}"
        )
    return value


def read_models_csv(path: Path) -> list[Candidate]:
    if not _exists(path):
        raise DataError(f"{path} is missing; a replay folder needs models.csv with a 'name' column")
    text = read_text(path, "the replay's model list")
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = [h.strip() for h in (reader.fieldnames or [])]
        rows = list(reader)
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None
    if "name" not in header:
        raise DataError(
            f"{path}: missing required column 'name' (found: {', '.join(header) or 'no header'})"
        )
    candidates: list[Candidate] = []
    seen: dict[str, int] = {}
    for i, raw_row in enumerate(rows, start=2):  # row 1 is the header
        if None in raw_row:
            raise DataError(f"{path}: row {i} has more fields than the header (quote commas)")
        row = {(k or "").strip(): (v or "") for k, v in raw_row.items()}
        name = row["name"].strip()
        if not name:
            raise DataError(f"{path}: row {i}: empty model name")
        if name in seen:
            raise DataError(f"{path}: duplicate model name {name!r} in rows {seen[name]} and {i}")
        seen[name] = i
        size_mb = _float(path, i, "size_mb", row.get("size_mb", ""))
        mmacs = _float(path, i, "mmacs", row.get("mmacs", ""))
        params_m = _float(path, i, "params_m", row.get("params_m", ""))
        card = _float(path, i, "benchmark_accuracy", row.get("benchmark_accuracy", ""))
        if card is not None and card > 1:
            raise DataError(
                f"{path}: row {i}, column benchmark_accuracy: {card:g} is above 1; give accuracy "
                "as a fraction in [0, 1] (76.1% is 0.761)"
            )
        licence = row.get("license", "").strip() or None
        try:
            candidates.append(
                Candidate(
                    name=name,
                    size_bytes=None if size_mb is None else size_mb * 1e6,
                    macs=None if mmacs is None else mmacs * 1e6,
                    params=None if params_m is None else round(params_m * 1e6),
                    benchmark_accuracy=card,
                    license=licence,
                )
            )
        except GreenRunnerError as exc:
            raise DataError(f"{path}: row {i}: {exc}") from None
    if not candidates:
        raise DataError(f"{path}: no models listed; add one row per model")
    return candidates


def _exists(path: Path) -> bool:
    """Whether something is at ``path`` (what it is, the reader checks)."""
    try:
        return path.exists() or path.is_symlink()
    except OSError as exc:
        raise DataError(f"{path}: {os_reason(exc)}") from None


# The dtypes a replay's arrays may have (booleans, integers, floats, strings): the header
# must say one of these before a byte of the data is read.
_NPY_KINDS = "biufU"


def _load_npy(path: Path) -> np.ndarray:
    """The array in a .npy file whose header was checked first: the array's declared shape
    and dtype must account for the file's size exactly, so a header that claims terabytes
    is refused before numpy allocates them."""
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise DataError(f"{path}: not a regular file")
            shape, dtype = _npy_header(fh, path)
            expected = math.prod(shape) * dtype.itemsize
            if st.st_size - fh.tell() != expected:
                raise DataError(
                    f"{path}: its header declares a {' x '.join(map(str, shape))} array of "
                    f"{dtype} ({expected:,} bytes of data) but the file holds "
                    f"{st.st_size - fh.tell():,}; the file is damaged or not what it claims"
                )
            fh.seek(0)
            array = np.load(fh, allow_pickle=False)
    except DataError:
        raise
    except (ValueError, OSError, EOFError, RuntimeError) as exc:
        detail = os_reason(exc) if isinstance(exc, OSError | RuntimeError) else str(exc)
        raise DataError(f"{path}: not a readable .npy array ({detail})") from None
    if not isinstance(array, np.ndarray):
        raise DataError(f"{path}: expected one array, found an archive")
    return array


def _npy_header(fh: BinaryIO, path: Path) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """(shape, dtype) from a .npy header (versions 1 and 2), the file left at the data."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(fh)
        else:
            raise DataError(f"{path}: .npy format version {version} is not supported (1 or 2)")
    except DataError:
        raise
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        raise DataError(f"{path}: not a readable .npy array ({exc})") from None
    del fortran  # either order reads back the same
    if dtype.hasobject or dtype.kind not in _NPY_KINDS or dtype.fields is not None:
        raise DataError(
            f"{path}: expected numbers, booleans or strings, got dtype {dtype} in its header"
        )
    return tuple(int(n) for n in shape), dtype


def _check_matrix(path: Path, array: np.ndarray, k: int) -> None:
    if array.ndim != 2:
        raise DataError(
            f"{path}: expected an N x K matrix, got {array.ndim} dimension(s) {array.shape}"
        )
    if array.shape[1] != k:
        raise DataError(
            f"{path}: has {array.shape[1]} columns but models.csv lists {k} models; "
            "column j must belong to row j of models.csv"
        )
    if array.shape[0] == 0:
        raise DataError(f"{path}: has no samples (0 rows)")
    if array.dtype.kind == "f" and np.isnan(array).any():
        bad = np.argwhere(np.isnan(array))[0]
        raise DataError(f"{path}: contains NaN (first at sample {bad[0]}, model column {bad[1]})")
    if array.dtype.kind not in "biufU":
        raise DataError(f"{path}: expected numbers, booleans or strings, got dtype {array.dtype}")


def correctness(folder: Path, k: int) -> np.ndarray:
    """The N x K correctness matrix from correct.npy, or predictions.npy + labels.npy."""
    correct_path = folder / "correct.npy"
    pred_path, label_path = folder / "predictions.npy", folder / "labels.npy"
    if _exists(correct_path):
        correct = _load_npy(correct_path)
        _check_matrix(correct_path, correct, k)
        if correct.dtype.kind != "b" and not np.isin(correct, (0, 1)).all():
            raise DataError(f"{correct_path}: values must be booleans (or 0/1)")
        return correct.astype(bool)
    if _exists(pred_path):
        if not _exists(label_path):
            raise DataError(
                f"{label_path} is missing; predictions.npy needs labels.npy (one label per sample)"
            )
        predictions = _load_npy(pred_path)
        _check_matrix(pred_path, predictions, k)
        labels = _load_npy(label_path)
        if labels.ndim != 1 or labels.shape[0] != predictions.shape[0]:
            raise DataError(
                f"{label_path}: expected {predictions.shape[0]} labels (one per row of "
                f"predictions.npy), got shape {labels.shape}"
            )
        if labels.dtype.kind == "f" and np.isnan(labels).any():
            raise DataError(f"{label_path}: contains NaN")
        if (labels.dtype.kind == "U") != (predictions.dtype.kind == "U"):
            raise DataError(
                f"{label_path}: labels are {labels.dtype} but predictions.npy holds "
                f"{predictions.dtype}; both must be class indices or both class names"
            )
        return np.asarray(predictions == labels[:, None])
    raise DataError(
        f"{folder}: a replay needs correct.npy, or predictions.npy with labels.npy; found neither"
    )


def load_replay(where: str | Path) -> ReplayRepository:
    """Load and validate a replay folder (or a bundled replay by name)."""
    folder = resolve_replay(where)
    candidates = read_models_csv(folder / "models.csv")
    correct = correctness(folder, len(candidates))
    readme = folder / "README.md"
    lines = read_text(readme, "the replay's README").strip().splitlines() if _exists(readme) else []
    description = lines[0] if lines else ""
    return ReplayRepository(
        name=folder.name,
        path=folder,
        candidates=tuple(candidates),
        evaluator=ReplayEvaluator(correct, [c.name for c in candidates]),
        description=description.lstrip("# "),
    )


def write_replay(
    folder: Path, candidates: list[Candidate], correct: np.ndarray, readme: str = ""
) -> None:
    """Write a replay folder that :func:`load_replay` reads back unchanged."""
    folder.mkdir(parents=True, exist_ok=True)

    def fmt(x: float | None, scale: float = 1.0) -> str:
        return "" if x is None else f"{x / scale:.6g}"

    with (folder / "models.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["name", *OPTIONAL_COLUMNS])
        for c in candidates:
            writer.writerow(
                [
                    c.name,
                    fmt(c.size_bytes, 1e6),
                    fmt(c.macs, 1e6),
                    fmt(c.params, 1e6),
                    fmt(c.benchmark_accuracy),
                    c.license or "",
                ]
            )
    np.save(folder / "correct.npy", np.asarray(correct, dtype=bool))
    if readme:
        (folder / "README.md").write_text(readme, encoding="utf-8")
