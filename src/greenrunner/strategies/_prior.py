"""An empirical-Bayes prior on each model's target accuracy, learned during the run.

Model-card accuracy predicts target accuracy well but not perfectly (ImageNet -> ObjectNet:
Spearman 0.98 over the imagenet-testbed's 335 models), and models evaluated on few samples
have noisy estimates. A hierarchical model uses both, with nothing assumed up front:

    accuracy_k ~ Normal(a + b * card_k, tau^2)          (the prior, fitted across models)
    estimate_k ~ Normal(accuracy_k, v_k)               (sampling noise of the prefix)

a, b and tau^2 are refitted from all models' current estimates every round (weighted least
squares, tau^2 by moments). If the cards say nothing about the target, b goes to 0 and tau
grows, and the prior falls back to shrinking toward the common mean; if a model beats its
card, its own samples outweigh the prior as they accumulate. Models without a card share
the intercept.
"""

from __future__ import annotations

import numpy as np

from greenrunner.history import History

# Candidate spreads of true accuracy around the prior line: 1 to 30 points.
TAU2_GRID = np.geomspace(1e-4, 0.09, 16)
# Inverse-gamma(2, 0.03) on tau^2: mode 0.01 (a 10-point spread between models), weak.
HYPER_ALPHA, HYPER_BETA = 2.0, 0.03


def posterior(history: History) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and variance of every model's accuracy on the *unseen* samples."""
    n = history.pulls.astype(float)
    s = history.successes.astype(float)
    pool = history.n_samples
    seen = n > 0
    y = np.where(seen, (s + 0.5) / (n + 1), np.nan)
    p = np.clip(y, 0.02, 0.98)
    # Sampling variance of a prefix mean, with the finite-pool correction.
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(seen, p * (1 - p) / np.maximum(n, 1) * (pool - n) / max(pool - 1, 1), np.inf)
    v = np.maximum(v, 1e-6)
    card = history.card_accuracy
    has_card = ~np.isnan(card)
    x = np.where(has_card, card, 0.0)
    design = np.column_stack([np.ones_like(x), x, (~has_card).astype(float)])
    usable = seen & np.isfinite(v)
    if usable.sum() < 4:
        mean0 = float(np.nanmean(y)) if usable.any() else 0.5
        prior_mean, tau2 = np.full(n.size, mean0), 0.25
    else:
        # Drop design columns the data cannot identify (no cards, or every model has one).
        cols = [0] + [j for j in (1, 2) if np.ptp(design[usable, j]) > 0]
        d = design[:, cols]
        du, yu, vu = d[usable], y[usable], v[usable]
        # Weighted least squares for every candidate tau^2 at once (normal equations).
        w = 1 / (TAU2_GRID[:, None] + vu[None, :])  # (grid, models)
        gram = np.einsum("gn,ni,nj->gij", w, du, du) + 1e-9 * np.eye(du.shape[1])
        rhs = np.einsum("gn,ni,n->gi", w, du, yu)
        coefs = np.linalg.solve(gram, rhs[..., None])[..., 0]  # (grid, columns)
        resid = yu[None, :] - coefs @ du.T
        # Marginal log-likelihood plus a weak inverse-gamma hyperprior on tau^2: with few
        # samples per model the likelihood is flat, and the hyperprior keeps the prior
        # wide (a confident, wrong prior is the failure that matters).
        score = -0.5 * np.sum(np.log(1 / w) + resid**2 * w, axis=1)
        score += -(HYPER_ALPHA + 1) * np.log(TAU2_GRID) - HYPER_BETA / TAU2_GRID
        g = int(np.argmax(score))
        tau2, beta = float(TAU2_GRID[g]), coefs[g]
        prior_mean = d @ beta
    prec = 1 / tau2 + np.where(seen, 1 / v, 0.0)
    mean = (prior_mean / tau2 + np.where(seen, y / v, 0.0)) / prec
    return np.clip(mean, 0.0, 1.0), 1 / prec


def posterior_draws(
    history: History, rng: np.random.Generator, draws: int, fitted: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """Draws (draws x K) of every model's accuracy on the whole pool, given ``posterior()``."""
    mean, var = fitted
    theta = np.clip(mean + np.sqrt(var) * rng.standard_normal((draws, mean.size)), 0.0, 1.0)
    s, n = history.successes, history.pulls
    pool = history.n_samples
    return np.asarray((s + theta * (pool - n)) / pool)


def posterior_pool_mean(history: History) -> np.ndarray:
    """Posterior mean of every model's accuracy on the whole pool (exact where fully seen)."""
    mean, _ = posterior(history)
    s, n = history.successes, history.pulls
    return np.asarray((s + mean * (history.n_samples - n)) / history.n_samples)
