"""Text files and paths the user names end in one clear line, never a traceback, a hang or
a full memory (red team, finding 11): every text file is read by one reader that checks it
is a regular UTF-8 file of bounded size; path options are checked for names no file system
allows; an OSError that still reaches the command line names the file; a replay's .npy
header is checked against the file's size before numpy allocates what it claims.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from greenrunner import cli
from greenrunner.errors import DataError
from greenrunner.textfiles import read_text
from tests.cli_helpers import greenrunner

EXIT_USER_ERROR = 2
LONG = "x" * 300  # one name over the 255 bytes file systems allow
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="FIFOs and /dev/zero")


# --- the reader ---------------------------------------------------------------------------------
def test_text_is_read_with_or_without_a_byte_order_mark(tmp_path: Path) -> None:
    plain, bom = tmp_path / "plain.txt", tmp_path / "bom.txt"
    plain.write_bytes("caf\u00e9\n".encode())
    bom.write_bytes(b"\xef\xbb\xbf" + "caf\u00e9\n".encode())
    assert read_text(plain, "the list") == read_text(bom, "the list") == "caf\u00e9\n"


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"a\n\xff\xfeb\n", "is not UTF-8 text (byte 2, line 2"),
        (b"a\nb\x00c\n", "holds a NUL character (line 2)"),
    ],
    ids=["latin-1", "nul"],
)
def test_bytes_that_are_not_text_are_named(tmp_path: Path, content: bytes, words: str) -> None:
    path = tmp_path / "f.txt"
    path.write_bytes(content)
    with pytest.raises(DataError, match="the list") as refused:
        read_text(path, "the list")
    assert words in str(refused.value) and str(path) in str(refused.value)


def test_a_file_over_the_cap_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_bytes(b"a" * 1001)
    with pytest.raises(DataError, match="1,001 bytes, more than the 1,000"):
        read_text(path, "the list", max_bytes=1000)


@posix_only
def test_a_fifo_and_a_device_are_refused_without_reading(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # no writer: a plain open() would block forever
    with pytest.raises(DataError, match="named pipe"):
        read_text(fifo, "the list")
    with pytest.raises(DataError, match="character device"):
        read_text("/dev/zero", "the list")  # would fill the memory
    with pytest.raises(DataError, match="it is a folder"):
        read_text(tmp_path, "the list")


def test_paths_the_file_system_refuses_are_named(tmp_path: Path) -> None:
    loop_a, loop_b = tmp_path / "a", tmp_path / "b"
    loop_a.symlink_to(loop_b)
    loop_b.symlink_to(loop_a)
    cases = [
        (loop_a / "x.txt", "loop of symbolic links"),
        (tmp_path / LONG, "255 bytes"),
        (tmp_path / "nul\0.txt", "NUL character"),
        (tmp_path / "missing.txt", "no such file"),
    ]
    for path, words in cases:
        with pytest.raises(DataError, match="cannot read the list") as refused:
            read_text(path, "the list")
        assert words in str(refused.value)


# --- the command line, in a real subprocess -----------------------------------------------------
def _refused(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    out = proc.stdout + proc.stderr
    assert proc.returncode == EXIT_USER_ERROR, out
    assert "Traceback" not in out
    err = proc.stderr.strip()
    assert err.startswith("error:") and err.count("\nerror") == 0, err
    for w in words:
        assert w in err, err
    return err


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, Path]:
    """A manifest with one tiny torch model (classes from classes.txt) and a target set."""
    torch = pytest.importorskip("torch")
    from tests import torch_models
    from tests.web_helpers import image_folder_files

    folder = tmp_path / "repo"
    folder.mkdir()
    torch.save(torch_models.mlp(16).state_dict(), folder / "w.pt")
    (folder / "classes.txt").write_text("a\nb\nc\n")
    (folder / "manifest.toml").write_text(
        '[repository]\nname = "r"\nclasses_file = "classes.txt"\n'
        '[[models]]\nname = "m"\nformat = "torch_state_dict"\npath = "w.pt"\n'
        'builder = "tests.torch_models:mlp"\nbuilder_args = { width = 16 }\n'
        "[models.preprocessing]\nsize = [8, 8]\nchannels = 1\n"
    )
    data = tmp_path / "target"
    for rel, blob in image_folder_files(n=6, prefix="").items():
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_bytes(blob)
    return folder / "manifest.toml", data


def test_text_files_that_are_not_utf8_are_one_line(tmp_path: Path, repo: tuple[Path, Path]) -> None:
    manifest, data = repo
    (manifest.parent / "classes.txt").write_bytes(b"a\n\xe9b\nc\n")
    _refused(greenrunner("inspect", "--models", str(manifest)), "classes.txt", "not UTF-8")
    (manifest.parent / "classes.txt").write_text("a\nb\nc\n")
    label_map = tmp_path / "map.json"
    label_map.write_bytes(b'{"a": "\xe9"}')
    _refused(
        greenrunner("select", "--models", str(manifest), "--data", str(data),
                    "--label-map", str(label_map), "--no-cache"),
        "map.json", "the label map is not UTF-8",
    )  # fmt: skip
    bad = manifest.parent / "bad.toml"
    bad.write_bytes(b"\xff" + manifest.read_bytes())
    _refused(greenrunner("inspect", "--models", str(bad)), "bad.toml", "the manifest is not UTF-8")


@posix_only
def test_a_fifo_or_device_as_a_text_file_neither_hangs_nor_fills_memory(
    tmp_path: Path, repo: tuple[Path, Path]
) -> None:
    manifest, data = repo
    fifo = tmp_path / "map.json"
    os.mkfifo(fifo)
    select = ("select", "--models", str(manifest), "--data", str(data), "--no-cache")
    _refused(greenrunner(*select, "--label-map", str(fifo), timeout=60), "named pipe")
    _refused(greenrunner(*select, "--label-map", "/dev/zero", timeout=60), "character device")
    os.mkfifo(manifest.parent / "fifo")
    text = manifest.read_text().replace('"classes.txt"', '"fifo"')
    manifest.write_text(text)
    _refused(greenrunner("inspect", "--models", str(manifest), timeout=60), "named pipe")


def test_a_nul_in_a_manifests_path_is_one_line(repo: tuple[Path, Path]) -> None:
    manifest, _ = repo
    manifest.write_text(manifest.read_text().replace('"classes.txt"', '"a\\u0000b"'))
    _refused(greenrunner("inspect", "--models", str(manifest)), "NUL character")


@pytest.mark.parametrize(
    "args",
    [
        ["select", "--replay", LONG],
        ["select", "--replay", "objectnet-sim", "--json", f"{LONG}/r.json"],
        ["select", "--replay", "objectnet-sim", "--report", LONG],
        ["select", "--replay", "objectnet-sim", "--store", LONG],
        ["select", "--models", LONG, "--data", "x"],
        ["select", "--models", "torchvision", "--data", LONG],
        ["select", "--models", "torchvision", "--data", "x", "--label-map", LONG],
        ["inspect", "--models", f"{LONG}/manifest.toml"],
        ["resume", "1", "--store", LONG],
        ["study", "--replay", LONG],
    ],
    ids=[
        "select-replay", "json", "report", "store", "models", "data", "label-map", "inspect",
        "resume-store", "study-replay",
    ],
)  # fmt: skip
def test_a_path_part_over_255_bytes_is_one_line(args: list[str]) -> None:
    _refused(greenrunner(*args), "255 bytes")


def test_a_manifest_naming_a_path_part_over_255_bytes_is_one_line(
    repo: tuple[Path, Path],
) -> None:
    manifest, _ = repo
    manifest.write_text(manifest.read_text().replace('"w.pt"', f'"{LONG}/w.pt"'))
    _refused(greenrunner("inspect", "--models", str(manifest)), "model 'm': path", "255 bytes")


def test_an_output_under_a_loop_of_links_is_refused_before_the_run(tmp_path: Path) -> None:
    (tmp_path / "loopA").symlink_to(tmp_path / "loopB")
    (tmp_path / "loopB").symlink_to(tmp_path / "loopA")
    for flag, name in (("--json", "x.json"), ("--report", "sub/x.md")):
        target = str(tmp_path / "loopA" / name)
        _refused(
            greenrunner("select", "--replay", "objectnet-sim", flag, target),
            f"cannot write {flag}",
            "loop of symbolic links",
        )


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["study", "--replay", "objectnet-sim", "--seed", "-1"], "--seed: expected a whole number"),
        (
            ["select", "--replay", "objectnet-sim", "--seed", "-1"],
            "--seed: expected a whole number",
        ),
        (
            ["study", "--replay", "objectnet-sim", "--workers", "-2"],
            "--workers: expected a positive",
        ),
        (
            ["study", "--replay", "objectnet-sim", "--workers", "0"],
            "--workers: expected a positive",
        ),
    ],
)
def test_negative_seeds_and_workers_are_parser_errors(args: list[str], words: str) -> None:
    proc = greenrunner(*args)
    assert proc.returncode == EXIT_USER_ERROR, proc.stderr
    assert words in proc.stderr and "Traceback" not in proc.stderr


def _lying_npy(path: Path, claimed: tuple[int, ...]) -> None:
    """A .npy whose header claims ``claimed`` but whose data is 4 x 3 booleans."""
    with path.open("wb") as fh:
        header = {"descr": "|b1", "fortran_order": False, "shape": claimed}
        np.lib.format.write_array_header_1_0(fh, header)
        fh.write(np.ones((4, 3), dtype=bool).tobytes())


@pytest.mark.parametrize("claimed", [(10**12, 3), (4, 10**9), (5, 3), (3, 3)])
def test_a_replay_npy_whose_header_lies_is_refused_before_loading(
    tmp_path: Path, claimed: tuple[int, ...]
) -> None:
    folder = tmp_path / "rp"
    folder.mkdir()
    (folder / "models.csv").write_text("name\na\nb\nc\n")
    _lying_npy(folder / "correct.npy", claimed)
    err = _refused(greenrunner("select", "--replay", str(folder)), "correct.npy")
    assert "header declares" in err and "the file holds 12" in err


def test_a_replay_npy_of_objects_is_refused_from_its_header(tmp_path: Path) -> None:
    folder = tmp_path / "rp"
    folder.mkdir()
    (folder / "models.csv").write_text("name\na\n")
    np.save(folder / "correct.npy", np.array([[1], [2]], dtype=object), allow_pickle=True)
    _refused(greenrunner("select", "--replay", str(folder)), "correct.npy", "dtype object")


def test_a_replay_models_csv_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "rp"
    folder.mkdir()
    (folder / "models.csv").write_bytes(b"name\n\xe9t\xe9\n")
    np.save(folder / "correct.npy", np.ones((2, 1), dtype=bool))
    _refused(greenrunner("select", "--replay", str(folder)), "models.csv", "not UTF-8")


# --- the last-resort handler, in this process ----------------------------------------------------
def test_an_oserror_that_reaches_main_is_one_line_naming_the_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fails(*_: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "/data/out.json")

    monkeypatch.setattr(cli, "cmd_strategies", fails)
    assert cli.main(["strategies"]) == EXIT_USER_ERROR
    err = capsys.readouterr().err.strip()
    assert err == "error: /data/out.json: No space left on device"


def test_other_exceptions_stay_tracebacks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Anything else is a bug in GreenRunner and must not be dressed up as a user error."""

    def bug(*_: object) -> None:
        raise KeyError("bug")

    monkeypatch.setattr(cli, "cmd_strategies", bug)
    with pytest.raises(KeyError):
        cli.main(["strategies"])
