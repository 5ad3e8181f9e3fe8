"""SIMULATED zoos built from real, published accuracy spreads.

Each model's accuracy on the target pool is a published figure (or, where none exists, a
prediction from one); which samples it gets right is simulated with
:func:`greenrunner.simulate.simulate_correctness` (an item-response model, so models agree
on easy samples and split on hard ones, as real ones do).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass

import numpy as np

from greenrunner.candidates import Candidate
from greenrunner.simulate import reference_file, simulate_correctness, torchvision_rows

N_SAMPLES = 1000


@dataclass(frozen=True)
class SimZoo:
    candidates: list[Candidate]
    correct: np.ndarray
    target: np.ndarray  # the accuracies the simulation was asked for
    notes: dict[str, float]  # fitted figures quoted in the README


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.asarray(np.log(p / (1 - p)))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1 / (1 + np.exp(-z)))


def testbed_rows() -> list[dict[str, str]]:
    with reference_file("imagenet_testbed_objectnet_top1.csv").open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def usable_torchvision_rows() -> list[dict[str, str]]:
    """Every torchvision weight with an ImageNet accuracy (vgg16 FEATURES has none)."""
    return [r for r in torchvision_rows() if math.isfinite(float(r["imagenet_top1_torchvision"]))]


def licence(raw: str) -> str:
    if "SWAG" in raw:
        return "CC-BY-NC-4.0"
    return raw.split(" (")[0]


def cost_model() -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[float, float]]:
    """Fit (log MMACs, log MB) ~ ImageNet top-1 over torchvision's weights.

    Returns the two slopes/intercepts (2 x 2: rows MACs, size; columns slope, intercept), the
    residual covariance, and the ImageNet range the fit covers.
    """
    rows = usable_torchvision_rows()
    acc = np.array([float(r["imagenet_top1_torchvision"]) for r in rows])
    y = np.log(np.array([[float(r["mmacs"]), float(r["file_size_MB"])] for r in rows]))
    coef = np.array([np.polyfit(acc, y[:, j], 1) for j in range(2)])
    resid = y - np.column_stack([np.polyval(coef[j], acc) for j in range(2)])
    return coef, np.cov(resid.T), resid.std(axis=0), (float(acc.min()), float(acc.max()))


def testbed_imagenetv2(seed: int = 0, n_models: int = 100) -> SimZoo:
    """~100 testbed models: ImageNetV2 top-1 as target, ImageNet val top-1 as model card.

    Sizes and MACs are not in the testbed file: they are drawn log-normally around a fit of
    log MACs and log size on ImageNet accuracy over torchvision's weights, with the fit's
    residual covariance, so better models tend to be bigger, as in torchvision.
    """
    rng = np.random.default_rng(seed)
    rows = testbed_rows()
    picked = sorted(rng.choice(len(rows), size=n_models, replace=False).tolist())
    chosen = [rows[i] for i in picked]
    imagenet = np.array([float(r["imagenet_val_top1"]) for r in chosen])
    target = np.array([float(r["imagenetv2_mf_top1"]) for r in chosen]) / 100
    coef, cov, _, (lo, hi) = cost_model()
    # Outside torchvision's accuracy range (e.g. models trained on a 1/16 subset) the
    # architecture, not the accuracy, sets the cost: clip before predicting.
    a = np.clip(imagenet, lo, hi)
    mean = np.column_stack([np.polyval(coef[j], a) for j in range(2)])
    draw = np.exp(mean + rng.multivariate_normal(np.zeros(2), cov, size=n_models))
    candidates = [
        Candidate(
            name=r["model"],
            size_bytes=float(draw[k, 1]) * 1e6,
            macs=float(draw[k, 0]) * 1e6,
            params=round(float(draw[k, 1]) / 4 * 1e6),  # float32: 4 bytes per parameter
            benchmark_accuracy=float(imagenet[k]) / 100,
            license="unknown",
        )
        for k, r in enumerate(chosen)
    ]
    correct = simulate_correctness(target, N_SAMPLES, rng)
    return SimZoo(
        candidates,
        correct,
        target,
        {
            "macs_slope_per_point": float(coef[0, 0]),
            "size_slope_per_point": float(coef[1, 0]),
            "residual_corr": float(cov[0, 1] / math.sqrt(cov[0, 0] * cov[1, 1])),
            "clip_low": lo,
            "clip_high": hi,
        },
    )


def objectnet_fit() -> tuple[float, float, float, int]:
    """logit(ObjectNet) = a + b * logit(ImageNet) over the testbed: (a, b, residual sd, n)."""
    rows = testbed_rows()
    x = _logit(np.array([float(r["imagenet_val_top1"]) for r in rows]) / 100)
    y = _logit(np.array([float(r["objectnet_top1"]) for r in rows]) / 100)
    b, a = np.polyfit(x, y, 1)
    resid = y - (a + b * x)
    return float(a), float(b), float(resid.std(ddof=2)), len(rows)


def torchvision_objectnet(seed: int = 0, noise_share: float = 0.25) -> SimZoo:
    """Every torchvision weight with an ImageNet accuracy; ObjectNet top-1 as target.

    Measured ObjectNet figures (31 weights) are used as they are; the rest are predicted
    from ImageNet top-1 by the testbed's logit-linear fit, plus model-specific noise of
    ``noise_share`` times the fit's residual sd (in logits).
    """
    rng = np.random.default_rng(seed)
    rows = usable_torchvision_rows()
    a, b, sd, n_fit = objectnet_fit()
    imagenet = np.array([float(r["imagenet_top1_torchvision"]) for r in rows]) / 100
    measured = np.array([bool(r["objectnet_top1_testbed"]) for r in rows])
    predicted = _sigmoid(a + b * _logit(imagenet) + rng.normal(0, noise_share * sd, len(rows)))
    target = np.where(
        measured,
        [float(r["objectnet_top1_testbed"] or "nan") / 100 for r in rows],
        predicted,
    )
    candidates = [
        Candidate(
            name=r["model"] if r["weights"] == "IMAGENET1K_V1" else f"{r['model']}.{r['weights']}",
            size_bytes=float(r["file_size_MB"]) * 1e6,
            macs=float(r["mmacs"]) * 1e6,
            params=round(float(r["params_M"]) * 1e6),
            benchmark_accuracy=float(imagenet[k]),
            license=licence(r["weights_license"]),
        )
        for k, r in enumerate(rows)
    ]
    correct = simulate_correctness(target, N_SAMPLES, rng)
    return SimZoo(
        candidates,
        correct,
        target,
        {
            "fit_a": a,
            "fit_b": b,
            "fit_residual_sd": sd,
            "fit_n": n_fit,
            "noise_sd": noise_share * sd,
            "n_measured": int(measured.sum()),
        },
    )
