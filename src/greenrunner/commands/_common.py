"""What the commands share: parameter parsing, writing files, printing the result."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from greenrunner.errors import ConfigError, GreenRunnerError
from greenrunner.render import print_result

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


def write_json(path: str, payload: Any) -> None:
    write_text(path, json.dumps(payload, indent=2, allow_nan=False) + "\n")


def write_text(path: str, text: str) -> None:
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise GreenRunnerError(f"cannot write {path}: {exc.strerror or exc}") from None


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
