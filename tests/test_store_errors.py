"""A store GreenRunner cannot use says why: read-only, a folder, missing, locked, another
program's SQLite database, not SQLite at all. Each case is a clear line, never a traceback,
and never the catch-all "not a GreenRunner store" for a file that is one."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from greenrunner.store import ExperimentStore, StoreError
from tests.cli_helpers import greenrunner, read_only, writable

EXIT_USER_ERROR = 2


def _refused(proc: object, *phrases: str) -> str:
    """stderr of a command that must have failed with one clear line holding ``phrases``."""
    err = proc.stderr  # type: ignore[attr-defined]
    assert proc.returncode == EXIT_USER_ERROR, err  # type: ignore[attr-defined]
    assert "Traceback" not in err
    for phrase in phrases:
        assert phrase in err, err
    return str(err)


@pytest.fixture
def done_store(tmp_path: Path, replay_dir: Path) -> Iterator[Path]:
    """A store holding one finished experiment, in its own folder; permissions restored."""
    folder = tmp_path / "stores"
    folder.mkdir()
    db = folder / "s.db"
    run = greenrunner("select", "--replay", str(replay_dir), "--store", str(db))
    assert run.returncode == 0, run.stderr
    yield db
    writable([folder, *folder.iterdir()])


def test_a_read_only_store_file_is_reported_read_only(done_store: Path, replay_dir: Path) -> None:
    read_only([done_store])
    for args in (
        ("resume", "1", "--store", str(done_store)),
        ("select", "--replay", str(replay_dir), "--store", str(done_store)),
    ):
        err = _refused(greenrunner(*args, unprivileged=True), "is read-only", "chmod u+w")
        assert "not a GreenRunner store" not in err


def test_a_store_in_a_read_only_folder_is_reported_read_only(
    done_store: Path, replay_dir: Path
) -> None:
    read_only([done_store.parent])
    err = _refused(
        greenrunner("resume", "1", "--store", str(done_store), unprivileged=True),
        "read-only folder",
        "copy the store to a writable folder",
    )
    assert "not a GreenRunner store" not in err
    # A new store cannot be created there either; nothing is run first.
    new = done_store.parent / "new.db"
    _refused(
        greenrunner("select", "--replay", str(replay_dir), "--store", str(new), unprivileged=True),
        f"the folder {done_store.parent} is read-only",
    )


def test_a_folder_or_a_missing_path_given_as_the_store_is_named(
    tmp_path: Path, replay_dir: Path
) -> None:
    folder = tmp_path / "runs"
    folder.mkdir()
    for args in (
        ("resume", "1", "--store", str(folder)),
        ("select", "--replay", str(replay_dir), "--store", str(folder)),
    ):
        _refused(greenrunner(*args), "is a folder, not a file", str(folder / "store.db"))
    assert list(folder.iterdir()) == []
    # Missing altogether: resume names the path and creates nothing.
    missing = tmp_path / "gone" / "s.db"
    _refused(greenrunner("resume", "1", "--store", str(missing)), f"no store at {missing}")
    assert not missing.parent.exists()


def test_a_store_path_under_a_file_is_named(tmp_path: Path, replay_dir: Path) -> None:
    blocker = tmp_path / "notes.txt"
    blocker.write_text("x")
    _refused(
        greenrunner("select", "--replay", str(replay_dir), "--store", str(blocker / "s.db")),
        f"{blocker} is a file, not a folder",
    )


def test_another_programs_database_is_named_and_left_alone(
    tmp_path: Path, replay_dir: Path
) -> None:
    web = tmp_path / "web.sqlite"
    with sqlite3.connect(web) as con:  # what `greenrunner serve` keeps
        con.execute("CREATE TABLE experiments (id INTEGER)")
        con.execute("CREATE TABLE repositories (id INTEGER)")
    before = web.read_bytes()
    _refused(
        greenrunner("select", "--replay", str(replay_dir), "--store", str(web)),
        "SQLite file but not a GreenRunner store",
        "experiments, repositories",
        "greenrunner serve",
    )
    assert web.read_bytes() == before


def test_a_file_that_is_not_sqlite_says_so(tmp_path: Path) -> None:
    text = tmp_path / "notes.db"
    text.write_text("just notes, no database")
    _refused(greenrunner("resume", "1", "--store", str(text)), "not an SQLite database")
    assert text.read_text() == "just notes, no database"


def test_a_locked_store_says_it_is_locked_and_for_how_long(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    ExperimentStore(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")  # another process in the middle of a write
        with pytest.raises(StoreError, match=r"locked by another process .* for 0\.2 s"):
            ExperimentStore(path, timeout=0.2)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with ExperimentStore(path, timeout=0.2) as store:
        holder = sqlite3.connect(path, isolation_level=None)
        try:
            holder.execute("BEGIN EXCLUSIVE")
            # Locked during a run: the same message, not an sqlite3 traceback.
            with pytest.raises(StoreError, match="locked by another process"):
                store.create({}, {})
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert store.create({}, {}) == 1  # and it works once the lock is gone
