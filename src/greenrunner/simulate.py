"""Simulated replays with realistic correlation between models.

Real models agree a lot: all get the easy samples right, and the hard ones split them. An
item-response model reproduces that: sample i has a difficulty b_i, model k an ability
theta_k, and each (model, sample) pair an idiosyncratic term e_ik; model k is right on
sample i with probability sigmoid(theta_k - b_i + e_ik). Each model gets exactly
round(accuracy_k * N) samples right, drawn without replacement with those probabilities as
weights, so pool accuracies match the figures the simulation starts from.

This is a simulation; results on it say how strategies behave under realistic agreement
between models, not what any real model scores.
"""

from __future__ import annotations

import csv
import numbers
from importlib import resources
from pathlib import Path

import numpy as np

from greenrunner.candidates import Candidate
from greenrunner.errors import ConfigError


def reference_file(name: str) -> Path:
    return Path(str(resources.files("greenrunner"))) / "data" / "reference" / name


def simulate_correctness(
    accuracies: np.ndarray,
    n_samples: int,
    rng: np.random.Generator,
    *,
    difficulty_spread: float = 2.0,
    idiosyncrasy: float = 1.0,
) -> np.ndarray:
    """An N x K boolean matrix whose column k has exactly round(accuracies[k] * N) Trues."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral) or n_samples < 1:
        raise ConfigError(f"n_samples must be a positive integer; got {n_samples!r}")
    acc = np.asarray(accuracies, dtype=float)
    if acc.ndim != 1 or np.any((acc < 0) | (acc > 1)):
        raise ConfigError(f"accuracies must be a vector of values in [0, 1]; got {acc.tolist()!r}")
    n_samples = int(n_samples)
    difficulty = rng.normal(0.0, difficulty_spread, size=(n_samples, 1))
    logits = -difficulty + rng.normal(0.0, idiosyncrasy, size=(n_samples, acc.size))
    # Ability shifts each column so its mean probability matches the target accuracy.
    theta = np.zeros(acc.size)
    lo, hi = np.full(acc.size, -30.0), np.full(acc.size, 30.0)
    for _ in range(60):
        theta = (lo + hi) / 2
        mean = (1 / (1 + np.exp(-(logits + theta)))).mean(axis=0)
        lo = np.where(mean < acc, theta, lo)
        hi = np.where(mean >= acc, theta, hi)
    p = 1 / (1 + np.exp(-(logits + theta)))
    # Weighted sampling without replacement (Efraimidis-Spirakis): the m largest keys.
    keys = np.log(rng.random(p.shape)) / np.maximum(p, 1e-12)
    ranks = np.argsort(np.argsort(-keys, axis=0), axis=0)
    counts = np.rint(acc * n_samples).astype(int)
    return np.asarray(ranks < counts[None, :])


def torchvision_rows() -> list[dict[str, str]]:
    with reference_file("torchvision_classification_weights.csv").open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def objectnet_sim(seed: int = 0, n_samples: int = 105) -> tuple[list[Candidate], np.ndarray]:
    """The paper's setting: torchvision models with measured ObjectNet accuracy, ~105 images.

    Sizes, MACs, parameters and card accuracies are torchvision's; target accuracies are the
    imagenet-testbed's ObjectNet top-1 for the 31 weights it covers; per-image correctness
    is simulated (see the module docstring).
    """
    rows = [r for r in torchvision_rows() if r["objectnet_top1_testbed"]]
    candidates = [
        Candidate(
            name=r["model"] if r["weights"] == "IMAGENET1K_V1" else f"{r['model']}.{r['weights']}",
            size_bytes=float(r["file_size_MB"]) * 1e6,
            macs=float(r["mmacs"]) * 1e6,
            params=round(float(r["params_M"]) * 1e6),
            benchmark_accuracy=float(r["imagenet_top1_torchvision"]) / 100,
            license=r["weights_license"],
        )
        for r in rows
    ]
    target = np.array([float(r["objectnet_top1_testbed"]) / 100 for r in rows])
    correct = simulate_correctness(target, n_samples, np.random.default_rng(seed))
    return candidates, correct
