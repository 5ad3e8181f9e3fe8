"""Drive the installed `greenrunner` command in a real subprocess, optionally without the
privileges that let root ignore file permissions (so read-only cases are real for root too)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# Root ignores permission bits through these capabilities; dropped, it obeys them.
_CAPS = "-dac_override,-dac_read_search,-fowner"


def greenrunner_exe() -> str:
    return shutil.which("greenrunner") or str(Path(sys.executable).parent / "greenrunner")


def unprivileged_prefix() -> list[str]:
    """A command prefix under which chmod'ed files are really read-only: nothing for a
    normal user; for root, setpriv without the capabilities that bypass permissions."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: file permissions cannot be enforced")
    return [setpriv, f"--inh-caps={_CAPS}", f"--bounding-set={_CAPS}"]


def greenrunner(
    *args: str, timeout: float = 120, unprivileged: bool = False, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `greenrunner ARGS`; the test suite's modules (builders) are importable."""
    prefix = unprivileged_prefix() if unprivileged else []
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "COLUMNS": "200"}
    return subprocess.run(
        [*prefix, greenrunner_exe(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
        cwd=cwd or REPO_ROOT,
    )


def read_only(paths: Sequence[Path]) -> None:
    """Take the write permission away (files 0444, folders 0555)."""
    for path in paths:
        path.chmod(0o555 if path.is_dir() else 0o444)


def writable(paths: Sequence[Path]) -> None:
    """Give it back, so the temporary folders can be removed."""
    for path in paths:
        if path.exists():
            path.chmod(0o755 if path.is_dir() else 0o644)
