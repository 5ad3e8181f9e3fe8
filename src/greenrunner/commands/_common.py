"""What the commands share: parameter parsing, writing files, printing the result."""

from __future__ import annotations

import argparse
import json
import os
import stat
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from greenrunner.errors import ConfigError, GreenRunnerError
from greenrunner.render import print_result
from greenrunner.textfiles import os_reason, path_problem

if TYPE_CHECKING:
    from greenrunner.result import SelectionResult


def parse_params(pairs: Sequence[str]) -> dict[str, Any]:
    """``--param epsilon=0.2`` -> {"epsilon": 0.2}; numbers parsed, the rest kept as text."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param takes name=value, e.g. --param epsilon=0.2; got {pair!r}")
        value: Any = raw.strip()
        for convert in (int, float):
            try:
                value = convert(raw)
                break
            except ValueError:
                continue
        out[key.strip()] = value
    return out


# The options that name a file a command writes, checked before any work is spent.
OUTPUT_OPTIONS = {"json": "--json", "report": "--report"}
# Every option that names a file or folder, checked for names no file system allows.
PATH_OPTIONS = {
    "replay": "--replay",
    "models": "--models",
    "data": "--data",
    "label_map": "--label-map",
    "json": "--json",
    "report": "--report",
    "store": "--store",
    "out": "--out",
    "data_dir": "--data-dir",
}


def check_paths(options: Mapping[str, Any]) -> None:
    """Refuse, on the text, a path option no file system can hold (a name over 255 bytes,
    a NUL character): one line naming the option, before anything opens it."""
    for key, flag in PATH_OPTIONS.items():
        value = options.get(key)
        if isinstance(value, str) and value:
            problem = path_problem(value)
            if problem is not None:
                raise ConfigError(f"{flag} {_shown(value)}: cannot be a path: {problem}")


def os_error_message(exc: OSError) -> str:
    """An OSError as one line: the file (or files) it is about, and why."""
    names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
    where = f"{' -> '.join(_shown(n) for n in names)}: " if names else ""
    return f"{where}{os_reason(exc)}"


def _shown(path: str) -> str:
    """A path short enough for one line of an error message."""
    return path if len(path) <= 80 else f"{path[:40]}...{path[-20:]}"


def check_outputs(options: Mapping[str, Any]) -> None:
    """Refuse output paths that cannot be written, before the run spends anything.

    A run that fails to write its result after minutes of inference has wasted them; the
    same checks up front cost nothing. The write itself can still fail (a full disk), and
    is atomic then too.
    """
    seen: dict[Path, str] = {}
    for key, flag in OUTPUT_OPTIONS.items():
        value = options.get(key)
        if not value:
            continue
        target = check_output_path(str(value), flag)
        if target in seen:
            raise ConfigError(
                f"{seen[target]} and {flag} both write {value}; give them different files"
            )
        seen[target] = flag


def check_output_path(path: str, flag: str = "the output") -> Path:
    """The absolute target of an output option, or a ConfigError saying why it cannot be
    written: a folder, a read-only file, a parent that is a file or not writable."""
    if not path.strip():
        raise ConfigError(f"{flag} needs a file path; got an empty one")
    problem = path_problem(path)
    if problem is not None:
        raise ConfigError(f"cannot write {flag} {_shown(path)}: {problem}")
    try:
        return _check_output_path(path, flag)
    except (OSError, RuntimeError) as exc:  # a loop of links, a name too long, ~nobody
        if isinstance(exc, RuntimeError) and "home" in str(exc):
            raise ConfigError(f"cannot write {flag} {path}: {exc}") from None
        raise ConfigError(f"cannot write {flag} {path}: {os_reason(exc)}") from None


def _check_output_path(path: str, flag: str) -> Path:
    target = Path(path).expanduser()
    if target.is_dir():
        raise ConfigError(
            f"cannot write {flag} {path}: it is a folder; give a file path inside it, "
            f"e.g. {target / ('result.json' if flag == '--json' else 'report.md')}"
        )
    if target.exists():
        if not target.is_file():
            raise ConfigError(f"cannot write {flag} {path}: it is not a regular file")
        if not os.access(target, os.W_OK):
            raise ConfigError(
                f"cannot write {flag} {path}: the file is read-only; make it writable "
                f"(chmod u+w {path}) or give another path"
            )
    folder = target.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # missing folders below it are created at the write
    if not folder.is_dir():
        raise ConfigError(
            f"cannot write {flag} {path}: {folder} is a file, not a folder; give a path in a folder"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(
            f"cannot write {flag} {path}: the folder {folder} is not writable; give a path "
            "in a writable folder"
        )
    return target.resolve()


def write_json(path: str, payload: Any) -> None:
    write_text(path, json.dumps(payload, indent=2, allow_nan=False) + "\n")


def write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically: into a temporary file in the same folder,
    flushed to disk, then renamed over the target. A crash or a full disk leaves the old
    file (or none), never half of the new one."""
    tmp: Path | None = None
    try:
        target = Path(path).expanduser()
        if target.is_symlink():
            target = target.resolve()  # replace the file the link points to, not the link
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        tmp = Path(name)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _file_mode(target))  # mkstemp makes it private (0600)
        os.replace(tmp, target)
        tmp = None
    except (OSError, RuntimeError) as exc:
        raise GreenRunnerError(f"cannot write {path}: {os_reason(exc)}") from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def _file_mode(target: Path) -> int:
    """The permissions the written file gets: the replaced file's, or the umask's."""
    if target.exists():
        return stat.S_IMODE(target.stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


class StagingCancelledError(GreenRunnerError):
    """The user declined the weights at staging."""


def finish(
    args: argparse.Namespace, console: Console, result: SelectionResult, source: str, note: str
) -> None:
    """Print the result and write the JSON and the report where asked."""
    from greenrunner.report import markdown_report

    print_result(console, result, source=source, note=note)
    if args.json:
        write_json(args.json, result.to_dict())
        console.print(f"Result written to {args.json}")
    if args.report:
        write_text(args.report, markdown_report(result, source=source, note=note))
        console.print(f"Report written to {args.report}")
