"""Replay folders: loading, the bundled replay, and a clear DataError for every bad file."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from greenrunner.candidates import Candidate
from greenrunner.errors import ConfigError, DataError
from greenrunner.evaluation import ReplayEvaluator
from greenrunner.repositories.replay import bundled_replays, load_replay, write_replay
from tests._helpers import Replay

HEADER = "name,size_mb,mmacs,params_m,benchmark_accuracy,license\n"


def _write_models(folder: Path, text: str) -> None:
    (folder / "models.csv").write_text(text, encoding="utf-8")


def _two_models(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    _write_models(folder, HEADER + "a,1.5,100,1,0.7,MIT\nb,3,200,2,0.8,\n")


# --- valid replays ------------------------------------------------------------------------


def test_round_trip_of_write_replay(replay_dir: Path, small_replay: Replay) -> None:
    repo = load_replay(replay_dir)
    assert repo.name == "replay"
    assert repo.description == "tiny test"
    assert [c.name for c in repo.candidates] == small_replay.names
    for got, want in zip(repo.candidates, small_replay.candidates, strict=True):
        assert got.size_bytes == pytest.approx(want.size_bytes)
        assert got.macs == pytest.approx(want.macs)
        assert got.benchmark_accuracy == pytest.approx(want.benchmark_accuracy)
        assert got.license == want.license
    assert np.array_equal(repo.evaluator.correct, small_replay.correct)
    assert repo.evaluator.n_samples == small_replay.n_samples


def test_load_replay_accepts_a_string_path(replay_dir: Path) -> None:
    assert load_replay(str(replay_dir)).evaluator.n_samples == 60


def test_correct_npy_values_and_optional_columns(tmp_path: Path) -> None:
    _two_models(tmp_path)
    correct = np.array([[1, 0], [1, 1], [0, 1]], dtype=np.int64)
    np.save(tmp_path / "correct.npy", correct)
    repo = load_replay(tmp_path)
    a, b = repo.candidates
    assert a.size_bytes == pytest.approx(1.5e6)
    assert a.macs == pytest.approx(100e6)
    assert a.params == 1_000_000
    assert a.benchmark_accuracy == 0.7
    assert a.license == "MIT"
    assert b.license is None
    assert repo.evaluator.correct.dtype == bool
    assert repo.evaluator.correct.tolist() == [[True, False], [True, True], [False, True]]


def test_only_the_name_column_is_required(tmp_path: Path) -> None:
    _write_models(tmp_path, "name\nx\ny\n")
    np.save(tmp_path / "correct.npy", np.ones((4, 2), dtype=bool))
    repo = load_replay(tmp_path)
    assert [c.name for c in repo.candidates] == ["x", "y"]
    assert repo.candidates[0].size_bytes is None
    assert repo.candidates[0].benchmark_accuracy is None


def test_predictions_and_labels(tmp_path: Path) -> None:
    _two_models(tmp_path)
    np.save(tmp_path / "predictions.npy", np.array([[3, 3], [1, 2], [0, 5], [7, 7]]))
    np.save(tmp_path / "labels.npy", np.array([3, 2, 0, 1]))
    repo = load_replay(tmp_path)
    assert repo.evaluator.correct.tolist() == [
        [True, True],
        [False, True],
        [True, False],
        [False, False],
    ]


def test_bundled_objectnet_sim_loads_by_name() -> None:
    assert "objectnet-sim" in bundled_replays()
    repo = load_replay("objectnet-sim")
    assert len(repo.candidates) == 31
    assert repo.evaluator.n_samples == 105
    assert repo.evaluator.correct.shape == (105, 31)
    assert all(c.size_bytes and c.macs and c.benchmark_accuracy for c in repo.candidates)
    assert "simulat" in repo.description.lower()


def test_replay_evaluator_looks_up_by_name() -> None:
    correct = np.array([[True, False], [False, False], [True, True]])
    ev = ReplayEvaluator(correct, ["a", "b"])
    assert ev.evaluate(Candidate("b"), np.array([2, 0])).tolist() == [True, False]
    with pytest.raises(ConfigError, match="'zzz'"):
        ev.evaluate(Candidate("zzz"), np.array([0]))
    with pytest.raises(ConfigError, match="N x 3"):
        ReplayEvaluator(correct, ["a", "b", "c"])


# --- errors: every one a DataError naming the file ------------------------------------------


def test_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match="nowhere") as info:
        load_replay(missing)
    assert "does not exist" in str(info.value)
    assert "objectnet-sim" in str(info.value)  # the message suggests the bundled replays


def test_file_instead_of_folder(tmp_path: Path) -> None:
    f = tmp_path / "models.csv"
    f.write_text("name\na\n")
    with pytest.raises(DataError, match="is a file"):
        load_replay(f)


def test_missing_models_csv(tmp_path: Path) -> None:
    np.save(tmp_path / "correct.npy", np.ones((3, 2), dtype=bool))
    with pytest.raises(DataError, match=r"models\.csv"):
        load_replay(tmp_path)


def test_missing_name_column(tmp_path: Path) -> None:
    _write_models(tmp_path, "model,size_mb\na,1\n")
    np.save(tmp_path / "correct.npy", np.ones((3, 1), dtype=bool))
    with pytest.raises(DataError, match=r"models\.csv") as info:
        load_replay(tmp_path)
    assert "'name'" in str(info.value)


def test_empty_models_csv(tmp_path: Path) -> None:
    _write_models(tmp_path, "")
    with pytest.raises(DataError, match=r"models\.csv"):
        load_replay(tmp_path)


def test_models_csv_without_rows(tmp_path: Path) -> None:
    _write_models(tmp_path, HEADER)
    with pytest.raises(DataError, match=r"models\.csv.*no models"):
        load_replay(tmp_path)


def test_empty_model_name(tmp_path: Path) -> None:
    _write_models(tmp_path, "name,size_mb\na,1\n ,2\n")
    with pytest.raises(DataError, match=r"models\.csv: row 3"):
        load_replay(tmp_path)


def test_duplicate_names(tmp_path: Path) -> None:
    _write_models(tmp_path, "name,size_mb\na,1\nb,2\na,3\n")
    with pytest.raises(DataError, match=r"models\.csv") as info:
        load_replay(tmp_path)
    assert "duplicate" in str(info.value)
    assert "'a'" in str(info.value)
    assert "rows 2 and 4" in str(info.value)


@pytest.mark.parametrize(
    ("column", "raw"),
    [
        ("size_mb", "big"),
        ("mmacs", "1,2"),
        ("params_m", "n/a"),
        ("size_mb", "-3"),
        ("mmacs", "nan"),
    ],
)
def test_bad_numbers(tmp_path: Path, column: str, raw: str) -> None:
    _write_models(tmp_path, f'name,{column}\na,1\nb,"{raw}"\n')
    np.save(tmp_path / "correct.npy", np.ones((3, 2), dtype=bool))
    with pytest.raises(DataError, match=r"models\.csv") as info:
        load_replay(tmp_path)
    message = str(info.value)
    assert "row 3" in message
    assert column in message
    assert repr(raw) in message


def test_benchmark_accuracy_given_in_percent(tmp_path: Path) -> None:
    _write_models(tmp_path, "name,benchmark_accuracy\na,0.7\nb,76.1\n")
    np.save(tmp_path / "correct.npy", np.ones((3, 2), dtype=bool))
    with pytest.raises(DataError, match=r"models\.csv") as info:
        load_replay(tmp_path)
    assert "benchmark_accuracy" in str(info.value)
    assert "76.1" in str(info.value)


def test_not_utf8_models_csv(tmp_path: Path) -> None:
    (tmp_path / "models.csv").write_bytes(b"name,size_mb\n\xff\xfe\xfa,1\n")
    with pytest.raises(DataError, match=r"models\.csv"):
        load_replay(tmp_path)


def test_shape_mismatch(tmp_path: Path) -> None:
    _two_models(tmp_path)
    np.save(tmp_path / "correct.npy", np.ones((5, 3), dtype=bool))
    with pytest.raises(DataError, match=r"correct\.npy") as info:
        load_replay(tmp_path)
    assert "3 columns" in str(info.value)
    assert "2 models" in str(info.value)


@pytest.mark.parametrize("shape", [(6,), (2, 3, 2), (0, 2)])
def test_wrong_dimensions_or_no_samples(tmp_path: Path, shape: tuple[int, ...]) -> None:
    _two_models(tmp_path)
    np.save(tmp_path / "correct.npy", np.ones(shape, dtype=bool))
    with pytest.raises(DataError, match=r"correct\.npy"):
        load_replay(tmp_path)


def test_nan_in_correct(tmp_path: Path) -> None:
    _two_models(tmp_path)
    correct = np.ones((4, 2))
    correct[2, 1] = np.nan
    np.save(tmp_path / "correct.npy", correct)
    with pytest.raises(DataError, match=r"correct\.npy") as info:
        load_replay(tmp_path)
    assert "NaN" in str(info.value)
    assert "sample 2" in str(info.value)


@pytest.mark.parametrize(
    "values",
    [np.array([[2, 1], [0, 1]]), np.array([[0.5, 1.0], [0.0, 1.0]]), np.array([[np.inf, 1.0]])],
)
def test_non_boolean_values_in_correct(tmp_path: Path, values: np.ndarray) -> None:
    _two_models(tmp_path)
    np.save(tmp_path / "correct.npy", values)
    with pytest.raises(DataError, match=r"correct\.npy.*boolean"):
        load_replay(tmp_path)


def test_string_values_in_correct(tmp_path: Path) -> None:
    _two_models(tmp_path)
    np.save(tmp_path / "correct.npy", np.array([["yes", "no"], ["no", "no"]]))
    with pytest.raises(DataError, match=r"correct\.npy"):
        load_replay(tmp_path)


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


@pytest.mark.parametrize(
    "content",
    [b"", b"this is not numpy", _npy_bytes(np.ones((50, 2), dtype=bool))[:-20]],
    ids=["empty", "garbage", "truncated"],
)
def test_corrupt_npy(tmp_path: Path, content: bytes) -> None:
    _two_models(tmp_path)
    (tmp_path / "correct.npy").write_bytes(content)
    with pytest.raises(DataError, match=r"correct\.npy"):
        load_replay(tmp_path)


def test_archive_saved_as_npy(tmp_path: Path) -> None:
    _two_models(tmp_path)
    buf = io.BytesIO()
    np.savez(buf, a=np.ones((3, 2)))
    (tmp_path / "correct.npy").write_bytes(buf.getvalue())
    with pytest.raises(DataError, match=r"correct\.npy"):
        load_replay(tmp_path)


def test_object_array_is_refused_without_unpickling(tmp_path: Path) -> None:
    _two_models(tmp_path)
    np.save(tmp_path / "correct.npy", np.array([[1, None]], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"correct\.npy"):
        load_replay(tmp_path)


def test_predictions_without_labels(tmp_path: Path) -> None:
    _two_models(tmp_path)
    np.save(tmp_path / "predictions.npy", np.zeros((3, 2), dtype=int))
    with pytest.raises(DataError, match=r"labels\.npy"):
        load_replay(tmp_path)


@pytest.mark.parametrize("labels", [np.arange(4), np.arange(2), np.arange(3).reshape(3, 1)])
def test_labels_of_wrong_length_or_shape(tmp_path: Path, labels: np.ndarray) -> None:
    _two_models(tmp_path)
    np.save(tmp_path / "predictions.npy", np.zeros((3, 2), dtype=int))
    np.save(tmp_path / "labels.npy", labels)
    with pytest.raises(DataError, match=r"labels\.npy") as info:
        load_replay(tmp_path)
    assert "expected 3 labels" in str(info.value)


def test_predictions_shape_mismatch(tmp_path: Path) -> None:
    _two_models(tmp_path)
    np.save(tmp_path / "predictions.npy", np.zeros((3, 5), dtype=int))
    np.save(tmp_path / "labels.npy", np.zeros(3, dtype=int))
    with pytest.raises(DataError, match=r"predictions\.npy"):
        load_replay(tmp_path)


def test_nan_in_predictions_or_labels(tmp_path: Path) -> None:
    _two_models(tmp_path)
    preds = np.zeros((3, 2))
    preds[1, 0] = np.nan
    np.save(tmp_path / "predictions.npy", preds)
    np.save(tmp_path / "labels.npy", np.zeros(3))
    with pytest.raises(DataError, match=r"predictions\.npy.*NaN"):
        load_replay(tmp_path)
    np.save(tmp_path / "predictions.npy", np.zeros((3, 2)))
    np.save(tmp_path / "labels.npy", np.array([0.0, np.nan, 1.0]))
    with pytest.raises(DataError, match=r"labels\.npy.*NaN"):
        load_replay(tmp_path)


def test_neither_npy_present(tmp_path: Path) -> None:
    _two_models(tmp_path)
    with pytest.raises(DataError) as info:
        load_replay(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message
    assert "correct.npy" in message
    assert "predictions.npy" in message


def test_write_replay_then_load_with_missing_metadata(tmp_path: Path) -> None:
    cands = [Candidate("only-name"), Candidate("with-size", size_bytes=2e6)]
    write_replay(tmp_path / "r", cands, np.array([[True, False]]))
    repo = load_replay(tmp_path / "r")
    assert repo.candidates[0].size_bytes is None
    assert repo.candidates[1].size_bytes == pytest.approx(2e6)
    assert repo.description == ""


def test_string_labels_with_integer_predictions_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "models.csv").write_text("name\na\nb\n", encoding="utf-8")
    np.save(folder / "predictions.npy", np.array([[0, 1], [1, 1]]))
    np.save(folder / "labels.npy", np.array(["cat", "dog"]))
    with pytest.raises(DataError, match=r"labels\.npy.*class indices or both class names"):
        load_replay(folder)


def test_string_predictions_and_labels_load(tmp_path: Path) -> None:
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "models.csv").write_text("name\na\nb\n", encoding="utf-8")
    np.save(folder / "predictions.npy", np.array([["cat", "dog"], ["dog", "dog"]]))
    np.save(folder / "labels.npy", np.array(["cat", "dog"]))
    repo = load_replay(folder)
    assert repo.evaluator.correct.tolist() == [[True, False], [True, True]]


def test_row_with_extra_fields_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "models.csv").write_text("name,size_mb\na,1,2\n", encoding="utf-8")
    np.save(folder / "correct.npy", np.ones((3, 1), dtype=bool))
    with pytest.raises(DataError, match=r"models\.csv: row 2 has more fields"):
        load_replay(folder)
