"""Small helpers the benchmark scripts share: settings, replay discovery, Markdown tables."""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from greenrunner.budget import BudgetUnit
from greenrunner.repositories.replay import ReplayRepository, load_replay
from greenrunner.reward import RewardModel, Weights

HERE = Path(__file__).resolve().parent
REPLAYS = HERE / "replays"
RESULTS = HERE / "results"
BUNDLED = "objectnet-sim"

ACCURACY_ONLY = Weights({"accuracy": 1.0})
DRONE = Weights({"accuracy": 0.63, "size": 0.25, "complexity": 0.21})  # the paper's weights


@dataclass(frozen=True)
class Setting:
    key: str
    title: str
    weights: Weights
    unit: BudgetUnit


SETTINGS = (
    Setting("accuracy_calls", "accuracy only, budget in calls", ACCURACY_ONLY, "calls"),
    Setting(
        "weighted_macs",
        "weights accuracy=0.63, size=0.25, complexity=0.21, budget in MACs",
        DRONE,
        "macs",
    ),
)


def replay_folders() -> list[Path]:
    """Every built replay under benchmarks/replays, by name."""
    if not REPLAYS.is_dir():
        return []
    return [p for p in sorted(REPLAYS.iterdir()) if (p / "models.csv").is_file()]


def kind(repo: ReplayRepository) -> str:
    text = repo.description.upper()
    return "REAL" if "REAL" in text and "SIMULATED" not in text else "SIMULATED"


def brute_force_pick(repo: ReplayRepository, weights: Weights, eps: float) -> dict[str, object]:
    """Brute force's pick on the full pool, and how many models are within eps of it."""
    correct = repo.evaluator.correct
    acc = correct.mean(axis=0)
    reward = np.asarray(RewardModel(weights, repo.candidates).reward(acc))
    best = int(np.argmax(reward))
    c = repo.candidates[best]
    return {
        "name": c.name,
        "accuracy": round(float(acc[best]), 4),
        "reward": round(float(reward[best]), 4),
        "size_mb": c.size_mb,
        "mmacs": c.mmacs,
        "within_eps": int(np.sum(reward >= reward[best] - eps - 1e-12)),
        "runner_up_gap": round(float(reward[best] - np.sort(reward)[-2]), 4)
        if len(reward) > 1
        else None,
    }


def load(name_or_path: str | Path) -> ReplayRepository:
    return load_replay(name_or_path)


def command_line() -> str:
    """How this script was invoked, as a command to copy."""
    script = Path(sys.argv[0])
    with contextlib.suppress(ValueError):  # run from elsewhere: keep the path as given
        script = script.resolve().relative_to(HERE.parent)
    return " ".join(["python", shlex.quote(str(script)), *map(shlex.quote, sys.argv[1:])])


def fmt(value: object, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(header: Sequence[str], rows: Sequence[Sequence[object]], align: str = "") -> str:
    """A Markdown table; ``align`` has one letter per column, l or r (default: l then r)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def cores() -> int:
    return os.cpu_count() or 1


def code_version() -> str:
    """The git commit the results came from, ``+dirty`` if the tree had changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=HERE,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=HERE.parent,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")
