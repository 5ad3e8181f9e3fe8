"""The README written into each built replay: what it is, how it was made, REAL or SIMULATED."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

import _digits_zoo as digits
import _sim_zoos as sims
from greenrunner.candidates import Candidate

TESTBED_NOTICE = """\
Accuracy figures from the imagenet-testbed of Taori et al., "Measuring Robustness to
Natural Distribution Shifts in Image Classification", NeurIPS 2020
(github.com/modestyachts/imagenet-testbed). MIT licence, Copyright (c) 2020 Rohan Taori,
Achal Dave, Vaishaal Shankar, Nicholas Carlini, Benjamin Recht, Ludwig Schmidt."""


@dataclass(frozen=True)
class Spread:
    """A zoo's target accuracies at a glance: the leaders and how close they are."""

    models: int
    samples: int
    top5: list[tuple[str, float]]
    within_1pt: int
    median: float
    min: float
    card_pick: str
    card_pick_target: float

    def as_dict(self) -> dict[str, object]:
        return {
            "models": self.models,
            "samples": self.samples,
            "top5": [{"name": n, "accuracy": a} for n, a in self.top5],
            "within_1pt_of_best": self.within_1pt,
            "median": self.median,
            "min": self.min,
            "model_card_pick": self.card_pick,
            "model_card_pick_target_accuracy": self.card_pick_target,
        }

    def markdown(self) -> str:
        lines = [
            f"{self.models} models x {self.samples} target samples. Target accuracy: median "
            f"{self.median:.3f}, lowest {self.min:.3f}; {self.within_1pt} model(s) within one "
            "point of the best. Top five:",
            "",
            "| target accuracy | model |",
            "| ---: | --- |",
        ]
        lines += [f"| {a:.3f} | {n} |" for n, a in self.top5]
        lines += [
            "",
            f"The model card's favourite, {self.card_pick}, scores {self.card_pick_target:.3f} "
            "on the target.",
        ]
        return "\n".join(lines)


def spread(candidates: list[Candidate], correct: np.ndarray) -> Spread:
    acc = correct.mean(axis=0)
    order = np.argsort(-acc, kind="stable")
    best = float(acc[order[0]])
    card = np.array([c.benchmark_accuracy or 0.0 for c in candidates])
    pick = int(np.argmax(card))
    return Spread(
        models=len(candidates),
        samples=int(correct.shape[0]),
        top5=[(candidates[j].name, round(float(acc[j]), 3)) for j in order[:5]],
        within_1pt=int(np.sum(acc >= best - 0.01 - 1e-9)),
        median=round(float(np.median(acc)), 3),
        min=round(float(acc.min()), 3),
        card_pick=candidates[pick].name,
        card_pick_target=round(float(acc[pick]), 3),
    )


SHIFT_TEXT = {
    "noise_blur_contrast": (
        "a cheaper sensor: each target image is blurred (Gaussian, sigma 0.3-0.7 px), its "
        "contrast scaled by 0.55-0.95, its background lifted by 0-3 grey levels (of 16) and "
        "Gaussian noise (sd 1.6 grey levels) added, then clipped to 0-16"
    ),
    "rotate_translate": (
        "careless framing: each target image is rotated by up to 12 degrees and shifted by up "
        "to 0.6 pixel in each direction (bilinear, zero fill), then clipped to 0-16"
    ),
}

MAC_TABLE = """\
| family | MACs per sample (one multiply-add, comparison or distance term = 1) | params |
| --- | --- | --- |
| linear (logistic, ridge, linear SVM, SGD, perceptron, LDA) | 64 x 10 | 64 x 10 + 10 |
| Gaussian naive Bayes | 2 x 10 x 64 | 2 x 10 x 64 + 10 |
| nearest centroid | 10 x 64 | 10 x 64 |
| k-NN (brute force) | n_train x 64 | n_train x 64 (stored samples) |
| SVM (one-vs-one) | n_SV x (64 + 1) kernel + n_SV x 9 dual terms | n_SV x (64 + 9) + 45 |
| decision tree | depth (an upper bound on the comparisons) | 2 x internal nodes + leaves x 10 |
| random forest, extra trees, AdaBoost | sum of tree depths + trees x 10 (vote) | sum over trees |
| gradient boosting | sum of the 10 x n_stages tree depths + one add each | sum over trees |
| MLP | sum of layer products (64 x h1 + h1 x h2 + ... + h_last x 10) | weights + biases |
| pipelines | sum of steps: scaler 64, PCA 64 x k, degree-2 features 2,080 | sum of steps |
| QDA (after PCA to k dims) | per class k x rank + rank | per class k x rank + rank + k |"""


def digits_readme(
    name: str, shift: str, seed: int, candidates: list[Candidate], correct: np.ndarray, sp: Spread
) -> str:
    fams = Counter(digits.family(c.name) for c in candidates)
    fam_text = ", ".join(f"{f} {n}" for f, n in sorted(fams.items(), key=lambda kv: -kv[1]))
    version = digits.sk("sklearn.__version__")
    n_train = 1797 - digits.N_TARGET - digits.N_CARD
    title = (
        f"{name}: REAL per-sample results of {len(candidates)} scikit-learn classifiers "
        f"on {correct.shape[0]} shifted digits"
    )
    return f"""\
# {title}

REAL: every model was trained and evaluated here, and each cell of `correct.npy` says
whether that model's prediction on that target image was right. Nothing is simulated; the
only modelled figures are the cost columns (counted from each fitted model's structure).

## How it was made
- Data: scikit-learn's bundled `load_digits` (1,797 8x8 grey images of hand-written
  digits, 10 classes; the UCI optical digits test set, shipped inside scikit-learn).
  Stratified split (seed {digits.SPLIT_SEED}): {n_train} training images (source),
  {digits.N_CARD} clean held-out source images (the "model card"), {digits.N_TARGET} target images.
- Target shift (seed {seed}): {SHIFT_TEXT[shift]}. Training and card images are clean.
- Models, {len(candidates)} by family: {fam_text}. Logistic regression at five C, linear
  SVMs, ridge, LDA, QDA, naive Bayes, nearest centroid, SGD and perceptron; RBF,
  polynomial, linear and sigmoid SVMs at several C and gamma; k-NN at k = 1-15, uniform
  or distance weights, Euclidean or Manhattan; decision trees, random forests and extra
  trees of 10-200 trees and several depths; gradient boosting, histogram gradient
  boosting, AdaBoost; MLPs from 32 to 128x128x128 units; PCA/scaler/polynomial-feature
  pipelines; and six recipes retrained on 50% and 25% of the training images (`_sub50`,
  `_sub25`). Pixels are scaled by 1/16 for every model; every random state is fixed
  ({digits.MODEL_SEED}). Built with scikit-learn {version}; other versions may give slightly
  different files.

## Columns of models.csv
- `size_mb`: size of the pickled fitted model (pickle protocol 5).
- `mmacs`: millions of multiply-accumulates per sample at inference, counted as below.
- `params_m`: millions of learned or stored numbers, as below.
- `benchmark_accuracy`: accuracy on the {digits.N_CARD} clean held-out source images.
- `license`: BSD-3-Clause (scikit-learn's; the fitted models are made here).

{MAC_TABLE}

## Target accuracy spread
{sp.markdown()}

Rebuild: `python benchmarks/build_replays.py --only {name}` (needs `pip install -e '.[bench]'`).
"""


def testbed_readme(zoo: sims.SimZoo, sp: Spread) -> str:
    n = zoo.notes
    clip = f"{n['clip_low']:.1f}-{n['clip_high']:.1f}%"
    title = (
        f"testbed-imagenetv2-sim: SIMULATED per-image results of {sp.models} ImageNet models "
        f"on {sp.samples} ImageNetV2-like images"
    )
    return f"""\
# {title}

SIMULATED. The accuracies are real, published figures; which images each model gets right
is simulated, and the sizes and MACs are made up (plausibly, see below). It shows how
selection strategies behave on a real spread of accuracies; it measures no model.

## How it was made
- Models: {sp.models} of the 335 models in the imagenet-testbed, drawn without replacement
  (seed 0) from `imagenet_testbed_objectnet_top1.csv`.
- Target accuracy: each model's ImageNetV2 (matched-frequency) top-1. Model card
  (`benchmark_accuracy`): its ImageNet validation top-1.
- Per-image correctness for {sp.samples} images: `greenrunner.simulate.simulate_correctness`
  (item-response model: an image difficulty shared by all models plus a per-(model, image)
  term; each model gets exactly round(accuracy x {sp.samples}) images right).
- Sizes and MACs are NOT in the testbed file. They are drawn log-normally: log MMACs and
  log MB follow a straight-line fit on ImageNet top-1 over torchvision's weights
  (+{n["macs_slope_per_point"]:.3f} and +{n["size_slope_per_point"]:.3f} in log per point of
  ImageNet accuracy, accuracy clipped to torchvision's range {clip}),
  with the fit's residual covariance (residual correlation {n["residual_corr"]:.2f}). So
  better models tend to be bigger and costlier, as in torchvision, but no figure is any
  particular model's. `params_m` = size / 4 bytes. `license` is unknown.

## Target accuracy spread
{sp.markdown()}

Rebuild: `python benchmarks/build_replays.py --only testbed-imagenetv2-sim`.

{TESTBED_NOTICE}
"""


def torchvision_readme(zoo: sims.SimZoo, sp: Spread) -> str:
    n = zoo.notes
    title = (
        f"torchvision-objectnet-sim: SIMULATED per-image results of {sp.models} torchvision "
        f"weights on {sp.samples} ObjectNet-like images"
    )
    return f"""\
# {title}

SIMULATED. Sizes, MACs, parameters and model-card accuracies are torchvision's real
figures; target accuracies are measured ObjectNet top-1 where the testbed has one and a
prediction elsewhere; which images each model gets right is simulated. It shows how
selection strategies behave; it measures no model.

## How it was made
- Models: every torchvision ImageNet-1k classification weight in
  `torchvision_classification_weights.csv` that has an ImageNet accuracy ({sp.models} of
  115; `vgg16.IMAGENET1K_FEATURES` is a feature extractor without one). A candidate is an
  (architecture, weights) pair; names are the builder name for `IMAGENET1K_V1` weights and
  `builder.WEIGHTS` otherwise. `size_mb` = weights file, `mmacs` = torchvision's `_ops`
  (GMACs at the weights' own resolution) x 1000, `params_m`, `benchmark_accuracy` =
  ImageNet top-1 from the model card. SWAG weights are CC-BY-NC-4.0 (non-commercial).
- Target accuracy: ObjectNet top-1 from the imagenet-testbed for the {n["n_measured"]} weights it
  covers; for the others, predicted from ImageNet top-1 by a logit-linear fit over the
  testbed's {n["fit_n"]:.0f} models, logit(ObjectNet) = {n["fit_a"]:.3f} + {n["fit_b"]:.3f} x
  logit(ImageNet) (residual sd {n["fit_residual_sd"]:.3f}), plus model-specific noise
  N(0, {n["noise_sd"]:.3f}) in logits (seed 0). The fit knows nothing of large-scale
  pre-training, so SWAG weights may be under-predicted.
- Per-image correctness for {sp.samples} images: `greenrunner.simulate.simulate_correctness`
  (item-response model; each model gets exactly round(accuracy x {sp.samples}) images right).

## Target accuracy spread
{sp.markdown()}

Rebuild: `python benchmarks/build_replays.py --only torchvision-objectnet-sim`.

{TESTBED_NOTICE}
"""
