"""Crash safety: the experiment store, the recording evaluator, `--store` and `resume`.

The proof the issue asks for is ``test_sigkilled_run_resumes_without_evaluating_twice``: a
real `greenrunner select --store` on real (tiny, slowed) torch models is SIGKILLed mid-run
and resumed; the resumed run computes exactly what was missing and ends with the result
of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from greenrunner.api import select
from greenrunner.budget import Budget
from greenrunner.cli import EXIT_USER_ERROR, main
from greenrunner.evaluation.base import EvaluationError, Evaluator
from greenrunner.evaluation.executors import InProcessExecutor, Outcome, Pull, evaluate_pull
from greenrunner.evaluation.recording import RecordingExecutor
from greenrunner.repositories.replay import write_replay
from greenrunner.reward import Weights
from greenrunner.store import ExperimentStore, StoreError, source_changes
from tests._helpers import FailingEvaluator, Replay
from tests._helpers import RecordingEvaluator as LoggingEvaluator
from tests.store_helpers import forwarded, write_counting_repository

REPO_ROOT = Path(__file__).resolve().parents[1]
# Differ between an interrupted and an uninterrupted run by nature, not by outcome.
VOLATILE = ("cache", "energy")


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def stable(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return {k: v for k, v in data.items() if k not in VOLATILE}


def observations(db: Path) -> list[tuple[int, str, int]]:
    with sqlite3.connect(db) as con:
        return [tuple(r) for r in con.execute("SELECT experiment, model, sample FROM observations")]


# --- the store --------------------------------------------------------------------------


def test_record_is_idempotent_and_lookup_returns_what_was_stored(tmp_path: Path) -> None:
    with ExperimentStore(tmp_path / "s.db") as store:
        exp = store.create({"seed": 1}, {"kind": "replay"})
        store.record(exp, "m0", [3, 5], np.array([True, False]))
        store.record(exp, "m0", [5, 7], np.array([True, True]))  # 5 again: first value kept
        assert store.lookup(exp, "m0", [3, 5, 7, 9]) == {3: True, 5: False, 7: True}
        assert store.lookup(exp, "m1", [3]) == {}
        assert store.count(exp) == 3
        many = list(range(2000))  # beyond SQLite's bound-parameter limit
        store.record(exp, "m1", many, np.ones(2000, dtype=bool))
        assert len(store.lookup(exp, "m1", many)) == 2000


def test_experiments_keep_settings_status_and_result_across_opens(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with ExperimentStore(path) as store:
        first = store.create({"seed": 1, "weights": {"accuracy": 1.0}}, {"kind": "replay"})
        second = store.create({"seed": 2}, {"kind": "replay"})
        store.finish(second, {"top": []})
    with ExperimentStore(path) as store:
        assert store.ids() == [first, second]
        exp = store.get(first)
        assert not exp.done and exp.result is None
        assert exp.settings == {"seed": 1, "weights": {"accuracy": 1.0}}
        assert store.get(second).done and store.get(second).result == {"top": []}
        with sqlite3.connect(path) as con:
            assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_unknown_experiment_names_the_known_ones(tmp_path: Path) -> None:
    with ExperimentStore(tmp_path / "s.db") as store:
        store.create({}, {})
        with pytest.raises(StoreError, match=r"no experiment 9 .*experiments: 1\)"):
            store.get(9)


def test_a_file_that_is_not_a_store_is_refused_and_left_alone(tmp_path: Path) -> None:
    text = tmp_path / "notes.db"
    text.write_text("not a database, just notes")
    with pytest.raises(StoreError, match="not a GreenRunner store"):
        ExperimentStore(text)
    assert text.read_text() == "not a database, just notes"
    foreign = tmp_path / "other.sqlite"
    with sqlite3.connect(foreign) as con:
        con.execute("CREATE TABLE t (x)")
    with pytest.raises(StoreError, match="SQLite file but not a GreenRunner store"):
        ExperimentStore(foreign)
    with sqlite3.connect(foreign) as con:
        assert [r[0] for r in con.execute("SELECT name FROM sqlite_master")] == ["t"]


def test_a_store_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    ExperimentStore(path).close()
    with sqlite3.connect(path) as con:
        con.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(StoreError, match="newer GreenRunner"):
        ExperimentStore(path)


def test_source_changes_names_what_changed() -> None:
    old = {"kind": "models", "data": "d1", "models": {"a": "1", "b": "2"}}
    assert source_changes(old, dict(old)) == []
    new = {"kind": "models", "data": "d2", "models": {"a": "1", "b": "3", "c": "4"}}
    assert source_changes(old, new) == [
        "the target data changed",
        "models new: c",
        "models changed: b",
    ]


# --- the recording evaluator ------------------------------------------------------------


def test_recording_executor_computes_only_what_the_store_lacks(
    tmp_path: Path, small_replay: Replay, paper_weights: Weights
) -> None:
    budget = Budget(0.4)
    with ExperimentStore(tmp_path / "s.db") as store:
        exp = store.create({}, {})
        inner = LoggingEvaluator(small_replay.evaluator())
        first = select(
            small_replay.candidates,
            inner,
            paper_weights,
            budget=budget,
            seed=5,
            executor=RecordingExecutor(InProcessExecutor(), store, exp),
        )
        pairs = list(inner.log)
        assert len(pairs) == len(set(pairs)) == store.count(exp) == first.calls
        # Lose the last third of the observations, as a kill would, and run again.
        lost = set(pairs[2 * len(pairs) // 3 :])
        with sqlite3.connect(store.path) as con:
            con.executemany("DELETE FROM observations WHERE model=? AND sample=?", sorted(lost))
        again = LoggingEvaluator(small_replay.evaluator())
        rec = RecordingExecutor(InProcessExecutor(), store, exp)
        second = select(
            small_replay.candidates, again, paper_weights, budget=budget, seed=5, executor=rec
        )
        assert set(again.log) == lost and len(again.log) == len(lost)
        assert rec.store_stats() == {"served": first.calls - len(lost), "computed": len(lost)}
        assert second == first


class ParallelExecutor:
    """Runs a round at once, as a cluster does, and remembers each round's pulls."""

    def __init__(self) -> None:
        self.rounds: list[list[tuple[str, list[int]]]] = []

    def run(self, evaluator: Evaluator, pulls: Sequence[Pull]) -> list[Outcome]:
        self.rounds.append([(c.name, ids.tolist()) for c, ids in pulls])
        return [evaluate_pull(evaluator, c, ids) for c, ids in pulls]

    def close(self) -> None:
        return None


def test_recording_hands_a_cluster_the_missing_pairs_of_a_round_at_once(
    tmp_path: Path, small_replay: Replay
) -> None:
    a, b = small_replay.candidates[:2]
    evaluator = small_replay.evaluator()
    with ExperimentStore(tmp_path / "s.db") as store:
        exp = store.create({}, {})
        store.record(exp, "m0", [1, 3], np.array([True, False]))
        cluster = ParallelExecutor()
        rec = RecordingExecutor(cluster, store, exp)
        out = rec.run(evaluator, [(a, np.array([3, 2, 1])), (b, np.array([1, 4]))])
        assert cluster.rounds == [[("m0", [2]), ("m1", [1, 4])]]
        want_a = [False, evaluator.evaluate(a, np.array([2]))[0], True]
        assert np.asarray(out[0]).tolist() == want_a
        assert np.asarray(out[1]).tolist() == evaluator.evaluate(b, np.array([1, 4])).tolist()
        assert rec.store_stats() == {"served": 2, "computed": 3} and store.count(exp) == 5
        # Everything stored now: nothing reaches the cluster.
        again = rec.run(evaluator, [(a, np.array([1, 2, 3]))])
        assert len(cluster.rounds) == 1 and np.asarray(again[0]).tolist() == [
            True,
            want_a[1],
            False,
        ]


def test_a_failed_pull_stores_nothing_and_fails_again(tmp_path: Path, small_replay: Replay) -> None:
    failing = FailingEvaluator(small_replay.evaluator(), frozenset({"m1"}))
    a, b = small_replay.candidates[:2]
    with ExperimentStore(tmp_path / "s.db") as store:
        exp = store.create({}, {})
        rec = RecordingExecutor(InProcessExecutor(), store, exp)
        for _ in range(2):
            out = rec.run(failing, [(a, np.array([0, 1])), (b, np.array([0, 1]))])
            assert isinstance(out[1], EvaluationError)
        assert store.lookup(exp, "m1", [0, 1]) == {} and store.count(exp) == 2
        assert rec.store_stats() == {"served": 2, "computed": 2}


# --- the command line on a replay -------------------------------------------------------


def test_select_store_prints_the_resume_command_and_resume_of_a_done_run_shows_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, replay_dir: Path
) -> None:
    db, out_json = tmp_path / "s.db", tmp_path / "a.json"
    code, out, err = run_cli(
        capsys, "select", "--replay", str(replay_dir), "--seed", "2", "--store", str(db),
        "--json", str(out_json),
    )  # fmt: skip
    assert code == 0, err
    assert f"resume with: greenrunner resume 1 --store {db}" in out
    assert "0 served from the store" in out
    again = tmp_path / "b.json"
    code, out, err = run_cli(capsys, "resume", "1", "--store", str(db), "--json", str(again))
    assert code == 0, err
    assert "already done" in out and "Recommended:" in out
    assert json.loads(again.read_text()) == json.loads(out_json.read_text())


def test_resume_of_an_interrupted_replay_run_ends_as_the_uninterrupted_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, replay_dir: Path
) -> None:
    db, ref, res = tmp_path / "s.db", tmp_path / "ref.json", tmp_path / "res.json"
    common = ("--replay", str(replay_dir), "--strategy", "thompson", "--seed", "4")
    assert run_cli(capsys, "select", *common, "--json", str(ref))[0] == 0
    assert run_cli(capsys, "select", *common, "--store", str(db), "--json", str(res))[0] == 0
    # Make it look killed: running again, the newest observations lost.
    with sqlite3.connect(db) as con:
        con.execute("UPDATE experiments SET status='running', result=NULL")
        total = con.execute("SELECT count(*) FROM observations").fetchone()[0]
        con.execute(
            "DELETE FROM observations WHERE (model, sample) IN "
            "(SELECT model, sample FROM observations ORDER BY model DESC, sample LIMIT 7)"
        )
    res.unlink()
    code, out, err = run_cli(capsys, "resume", "1", "--store", str(db))
    assert code == 0, err
    assert f"{total - 7} observations stored" in out
    assert f"7 evaluations computed by this run, {total - 7} served" in out
    assert stable(res) == stable(ref)  # written where the original run asked


def test_resume_refuses_a_changed_or_missing_source(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, small_replay: Replay
) -> None:
    folder, db = tmp_path / "replay", tmp_path / "s.db"
    write_replay(folder, small_replay.candidates, small_replay.correct)
    assert run_cli(capsys, "select", "--replay", str(folder), "--store", str(db))[0] == 0
    with sqlite3.connect(db) as con:
        con.execute("UPDATE experiments SET status='running'")
    write_replay(folder, small_replay.candidates, ~small_replay.correct)
    code, _, err = run_cli(capsys, "resume", "1", "--store", str(db))
    assert code == EXIT_USER_ERROR
    assert "source changed" in err and "the replay changed" in err
    for f in folder.iterdir():
        f.unlink()
    folder.rmdir()
    code, _, err = run_cli(capsys, "resume", "1", "--store", str(db))
    assert code == EXIT_USER_ERROR
    assert "cannot resume experiment 1" in err and "does not exist" in err


def test_resume_reports_unknown_ids_missing_and_foreign_stores(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run_cli(capsys, "resume", "1", "--store", str(tmp_path / "none.db"))
    assert code == EXIT_USER_ERROR and "no store at" in err
    (tmp_path / "x.db").write_text("hello")
    code, _, err = run_cli(capsys, "resume", "1", "--store", str(tmp_path / "x.db"))
    assert code == EXIT_USER_ERROR and "not a GreenRunner store" in err
    ExperimentStore(tmp_path / "s.db").close()
    code, _, err = run_cli(capsys, "resume", "3", "--store", str(tmp_path / "s.db"))
    assert code == EXIT_USER_ERROR and "no experiment 3" in err and "Traceback" not in err


def test_run_store_keeps_the_staging_record_for_the_resume(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, replay_dir: Path
) -> None:
    db, first = tmp_path / "s.db", tmp_path / "a.json"
    code, _, err = run_cli(
        capsys, "run", "--replay", str(replay_dir), "--use-case", "a phone app", "--yes",
        "--store", str(db), "--json", str(first),
    )  # fmt: skip
    assert code == 0, err
    with sqlite3.connect(db) as con:
        con.execute("UPDATE experiments SET status='running'")
        con.execute("DELETE FROM observations")
    second = tmp_path / "b.json"
    assert run_cli(capsys, "resume", "1", "--store", str(db), "--json", str(second))[0] == 0
    assert stable(second) == stable(first) and stable(first)["staging"] is not None


# --- the proof: SIGKILL a real run on real models, resume it ----------------------------


def _wait_for_observations(db: Path, proc: subprocess.Popen[str], at_least: int) -> int:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be killed; slow it down"
        try:
            with sqlite3.connect(db, timeout=1) as con:
                n = int(con.execute("SELECT count(*) FROM observations").fetchone()[0])
        except sqlite3.Error:
            n = 0  # not created yet
        if n >= at_least:
            return n
        time.sleep(0.02)
    raise AssertionError(f"fewer than {at_least} observations after 120 s")


@pytest.mark.slow
def test_sigkilled_run_resumes_without_evaluating_twice(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    log, gate, db = tmp_path / "forward.log", tmp_path / "slow", tmp_path / "store.db"
    manifest, data = write_counting_repository(tmp_path / "repo", log=log, gate=gate, delay=0.15)
    args = [
        "select", "--models", str(manifest), "--data", str(data), "--no-cache",
        "--batch-size", "4", "--budget", "0.5", "--seed", "1",
    ]  # fmt: skip

    # The uninterrupted run, for reference; no store, full speed.
    ref = tmp_path / "ref.json"
    assert run_cli(capsys, *args, "--json", str(ref))[0] == 0
    total = json.loads(ref.read_text())["calls"]
    overhead = forwarded(log) - total  # per process: a load check and a MAC count per model
    assert 0 < overhead < total
    log.unlink()

    # The same run, slowed, with a store, killed once a third of its work is committed.
    gate.touch()
    res = tmp_path / "res.json"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with subprocess.Popen(
        [sys.executable, "-m", "greenrunner.cli", *args, "--store", str(db), "--json", str(res)],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    ) as proc:  # fmt: skip
        try:
            _wait_for_observations(db, proc, total // 3)
        finally:
            proc.send_signal(signal.SIGKILL)
        output = proc.communicate(timeout=30)[0]
    assert proc.returncode == -signal.SIGKILL
    assert "greenrunner resume 1 --store" in output and not res.exists()
    before = observations(db)
    assert total // 3 <= len(before) < total
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT status FROM experiments").fetchone()[0] == "running"

    # Resume at full speed: only the missing pairs are evaluated.
    gate.unlink()
    log.unlink()
    code, out, err = run_cli(capsys, "resume", "1", "--store", str(db))
    assert code == 0, err
    after = observations(db)
    assert len(after) == len(set(after)) == total  # every pull stored once
    assert set(before) <= set(after)
    computed = total - len(before)
    assert f"{computed:,} evaluations computed by this run, {len(before):,} served" in out
    assert forwarded(log) - overhead == computed  # the models saw exactly the missing samples
    assert stable(res) == stable(ref)


def test_resume_refuses_observations_made_under_other_preprocessing_or_labels(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Stored correctness depends on the preprocessing and the label map, not only on the
    weights: a resume after either changed would mix two different models' answers."""
    pytest.importorskip("torch")
    log, gate, db = tmp_path / "forward.log", tmp_path / "slow", tmp_path / "store.db"
    manifest, data = write_counting_repository(tmp_path / "repo", log=log, gate=gate, delay=0)
    args = ["select", "--models", str(manifest), "--data", str(data), "--no-cache"]
    assert run_cli(capsys, *args, "--budget", "0.3", "--store", str(db))[0] == 0

    def reopen() -> tuple[int, str]:
        with sqlite3.connect(db) as con:
            con.execute("UPDATE experiments SET status='running'")
        code, _, err = run_cli(capsys, "resume", "1", "--store", str(db))
        return code, err

    original = manifest.read_text(encoding="utf-8")
    manifest.write_text(original.replace("channels = 1\n", "channels = 1\nmean = [0.5]\n", 1))
    code, err = reopen()
    assert code == EXIT_USER_ERROR
    assert "source changed" in err and "models changed: net0" in err and "net1" not in err

    manifest.write_text(original)  # restored: the same models again
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"a": ["b"], "b": ["a"], "c": ["c"]}))
    with sqlite3.connect(db) as con:  # as if the run had been started with this label map
        settings = json.loads(con.execute("SELECT settings FROM experiments").fetchone()[0])
        settings["label_map"] = str(mapping)
        con.execute("UPDATE experiments SET settings = ?", (json.dumps(settings),))
    code, err = reopen()
    assert code == EXIT_USER_ERROR and "models changed: net0, net1, net2, net3" in err
