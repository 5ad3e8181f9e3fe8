"""A REAL model zoo: about 100 scikit-learn classifiers on the bundled 8x8 digits.

Every model is trained here on a clean source split and really evaluated, sample by
sample, on a shifted target split; nothing about its correctness is simulated. What is
modelled is the cost: MACs per sample are counted from each fitted model's structure
(formulas in :func:`inference_cost` and in the replays' READMEs).

scikit-learn is imported by name at run time (``pip install -e '.[bench]'``), so the
package and its type checks do not need it.
"""

from __future__ import annotations

import importlib
import pickle
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from greenrunner.candidates import Candidate

N_TARGET = 1000  # shifted target pool
N_CARD = 200  # clean held-out source split: the "model card" accuracy
N_CLASSES = 10
N_FEATURES = 64
SPLIT_SEED = 0
MODEL_SEED = 0


def sk(path: str) -> Any:
    """``sk("sklearn.svm.SVC")``: a scikit-learn object, with the fix if it is missing."""
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError:
        raise SystemExit(
            "scikit-learn is needed to build the real model zoos: pip install -e '.[bench]'"
        ) from None


@dataclass(frozen=True)
class Splits:
    x_train: np.ndarray  # raw pixel values 0..16, shape (n, 64)
    y_train: np.ndarray
    x_card: np.ndarray
    y_card: np.ndarray
    x_target: np.ndarray  # clean; a shift is applied by the caller
    y_target: np.ndarray


def load_splits() -> Splits:
    """Stratified, seeded: 597 train / 200 card / 1000 target of the 1797 digits."""
    digits = sk("sklearn.datasets.load_digits")()
    split = sk("sklearn.model_selection.train_test_split")
    x, y = digits.data.astype(float), digits.target.astype(int)
    x_rest, x_target, y_rest, y_target = split(
        x, y, test_size=N_TARGET, stratify=y, random_state=SPLIT_SEED
    )
    x_train, x_card, y_train, y_card = split(
        x_rest, y_rest, test_size=N_CARD, stratify=y_rest, random_state=SPLIT_SEED
    )
    return Splits(x_train, y_train, x_card, y_card, x_target, y_target)


# --- target shifts -------------------------------------------------------------------------


def shift_noise_blur_contrast(x: np.ndarray, seed: int) -> np.ndarray:
    """A cheaper sensor: slight blur, lower and uneven contrast, a brighter background, noise."""
    rng = np.random.default_rng(seed)
    out = np.empty_like(x)
    for i, row in enumerate(x):
        img = ndimage.gaussian_filter(row.reshape(8, 8), sigma=rng.uniform(0.3, 0.7))
        contrast = rng.uniform(0.55, 0.95)
        background = rng.uniform(0.0, 3.0)
        img = img * contrast + background + rng.normal(0.0, 1.6, size=(8, 8))
        out[i] = np.clip(img, 0.0, 16.0).ravel()
    return out


def shift_rotate_translate(x: np.ndarray, seed: int) -> np.ndarray:
    """Careless framing: rotations up to 12 degrees and sub-pixel shifts up to 0.6 pixel."""
    rng = np.random.default_rng(seed)
    out = np.empty_like(x)
    for i, row in enumerate(x):
        img = ndimage.rotate(
            row.reshape(8, 8), rng.uniform(-12, 12), reshape=False, order=1, mode="constant"
        )
        img = ndimage.shift(img, rng.uniform(-0.6, 0.6, size=2), order=1, mode="constant")
        out[i] = np.clip(img, 0.0, 16.0).ravel()
    return out


SHIFTS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "noise_blur_contrast": shift_noise_blur_contrast,
    "rotate_translate": shift_rotate_translate,
}


# --- the zoo -------------------------------------------------------------------------------


def model_specs() -> list[tuple[str, Any, float]]:
    """(name, unfitted estimator, share of the training split it is trained on)."""
    s = MODEL_SEED
    logreg = sk("sklearn.linear_model.LogisticRegression")
    svc = sk("sklearn.svm.SVC")
    knn = sk("sklearn.neighbors.KNeighborsClassifier")
    tree = sk("sklearn.tree.DecisionTreeClassifier")
    forest = sk("sklearn.ensemble.RandomForestClassifier")
    extra = sk("sklearn.ensemble.ExtraTreesClassifier")
    mlp = sk("sklearn.neural_network.MLPClassifier")
    pipe = sk("sklearn.pipeline.make_pipeline")
    pca = sk("sklearn.decomposition.PCA")
    scaler = sk("sklearn.preprocessing.StandardScaler")

    specs: list[tuple[str, Any, float]] = []

    def add(name: str, est: Any, share: float = 1.0) -> None:
        specs.append((name, est, share))

    for c in (0.01, 0.1, 1.0, 10.0, 100.0):
        add(f"logreg_C{c:g}", logreg(C=c, max_iter=3000))
    for c in (0.01, 0.1, 1.0):
        add(f"linear_svc_C{c:g}", sk("sklearn.svm.LinearSVC")(C=c, max_iter=20000, random_state=s))
    for a in (0.1, 1.0, 10.0):
        add(f"ridge_a{a:g}", sk("sklearn.linear_model.RidgeClassifier")(alpha=a))
    lda = sk("sklearn.discriminant_analysis.LinearDiscriminantAnalysis")
    add("lda", lda())
    add("lda_shrinkage", lda(solver="lsqr", shrinkage="auto"))
    qda = sk("sklearn.discriminant_analysis.QuadraticDiscriminantAnalysis")
    for k, r in ((20, 0.1), (30, 0.5)):  # ~60 samples per class: QDA needs fewer features
        add(f"pca{k}_qda_reg{r:g}", pipe(pca(n_components=k, random_state=s), qda(reg_param=r)))
    for v in (1e-9, 1e-2, 1e-1):
        add(f"gaussian_nb_vs{v:g}", sk("sklearn.naive_bayes.GaussianNB")(var_smoothing=v))
    add("nearest_centroid", sk("sklearn.neighbors.NearestCentroid")())
    sgd = sk("sklearn.linear_model.SGDClassifier")
    for loss in ("hinge", "log_loss", "modified_huber"):
        add(f"sgd_{loss}", sgd(loss=loss, max_iter=2000, tol=1e-4, random_state=s))
    add("perceptron", sk("sklearn.linear_model.Perceptron")(random_state=s))

    for c in (1.0, 10.0):
        for g in (0.02, 0.05, 0.1, 0.2):
            add(f"svc_rbf_C{c:g}_g{g:g}", svc(C=c, gamma=g))
    for d in (2, 3):
        for c in (1.0, 10.0):
            add(f"svc_poly{d}_C{c:g}", svc(kernel="poly", degree=d, C=c, gamma="scale"))
    for c in (0.1, 1.0):
        add(f"svc_linear_C{c:g}", svc(kernel="linear", C=c))
    add("svc_sigmoid", svc(kernel="sigmoid", C=1.0, gamma=0.01))
    add("nu_svc_rbf", sk("sklearn.svm.NuSVC")(nu=0.1, gamma=0.05))

    for k in (1, 3, 5, 7, 11, 15):
        for w in ("uniform", "distance"):
            add(f"knn_k{k}_{w}", knn(n_neighbors=k, weights=w, algorithm="brute"))
    for k in (3, 5, 7, 11):
        add(f"knn_k{k}_manhattan", knn(n_neighbors=k, p=1, weights="distance", algorithm="brute"))

    for depth in (5, 8, None):
        for crit in ("gini", "entropy"):
            add(
                f"tree_{crit}_d{depth or 'full'}",
                tree(max_depth=depth, criterion=crit, random_state=s),
            )
    for n in (10, 50, 200):
        for depth in (None, 8):
            add(
                f"random_forest_{n}_d{depth or 'full'}",
                forest(n_estimators=n, max_depth=depth, random_state=s),
            )
            add(
                f"extra_trees_{n}_d{depth or 'full'}",
                extra(n_estimators=n, max_depth=depth, random_state=s),
            )
    gb = sk("sklearn.ensemble.GradientBoostingClassifier")
    for n in (50, 150):
        add(f"gradient_boosting_{n}", gb(n_estimators=n, max_depth=3, random_state=s))
    hgb = sk("sklearn.ensemble.HistGradientBoostingClassifier")
    for n in (50, 200):
        add(f"hist_gradient_boosting_{n}", hgb(max_iter=n, early_stopping=False, random_state=s))
    ada = sk("sklearn.ensemble.AdaBoostClassifier")
    for n in (50, 200):
        add(
            f"adaboost_{n}_d3",
            ada(tree(max_depth=3, random_state=s), n_estimators=n, random_state=s),
        )

    for hidden in ((32,), (64,), (128,), (256,), (64, 64), (128, 64), (256, 128), (128, 128, 128)):
        label = "x".join(str(h) for h in hidden)
        add(f"mlp_{label}", mlp(hidden_layer_sizes=hidden, max_iter=2000, random_state=s))
    add("mlp_128_alpha1", mlp(hidden_layer_sizes=(128,), alpha=1.0, max_iter=2000, random_state=s))
    add(
        "mlp_64_tanh",
        mlp(hidden_layer_sizes=(64,), activation="tanh", max_iter=2000, random_state=s),
    )

    for k in (10, 20, 30):
        add(
            f"pca{k}_svc_rbf", pipe(pca(n_components=k, random_state=s), svc(C=10.0, gamma="scale"))
        )
    add(
        "pca20_knn_k5",
        pipe(pca(n_components=20, random_state=s), knn(n_neighbors=5, algorithm="brute")),
    )
    add("pca16_logreg", pipe(pca(n_components=16, random_state=s), logreg(C=1.0, max_iter=3000)))
    add("scaled_svc_rbf", pipe(scaler(), svc(C=10.0, gamma="scale")))
    add("scaled_logreg", pipe(scaler(), logreg(C=0.1, max_iter=3000)))
    add(
        "scaled_mlp_128",
        pipe(scaler(), mlp(hidden_layer_sizes=(128,), max_iter=2000, random_state=s)),
    )
    add(
        "poly2_logreg",
        pipe(
            sk("sklearn.preprocessing.PolynomialFeatures")(degree=2), logreg(C=0.1, max_iter=3000)
        ),
    )

    # The same recipes trained on less data: a zoo also holds under-trained siblings.
    for share in (0.5, 0.25):
        tag = f"sub{round(share * 100)}"
        add(f"svc_rbf_C10_g0.05_{tag}", svc(C=10.0, gamma=0.05), share)
        add(
            f"knn_k3_distance_{tag}",
            knn(n_neighbors=3, weights="distance", algorithm="brute"),
            share,
        )
        add(f"random_forest_200_{tag}", forest(n_estimators=200, random_state=s), share)
        add(f"extra_trees_200_{tag}", extra(n_estimators=200, random_state=s), share)
        add(f"mlp_128_{tag}", mlp(hidden_layer_sizes=(128,), max_iter=2000, random_state=s), share)
        add(f"logreg_C1_{tag}", logreg(C=1.0, max_iter=3000), share)
    return specs


# --- cost: MACs and parameters per sample, counted from the fitted model ------------------


def _tree_cost(tree: Any) -> tuple[float, float]:
    """A fitted sklearn tree: (comparisons on the deepest path, stored numbers)."""
    t = tree.tree_
    leaves = int((t.children_left == -1).sum())
    internal = int(t.node_count) - leaves
    per_leaf = int(np.prod(t.value.shape[1:]))
    return float(tree.get_depth()), float(2 * internal + leaves * per_leaf)


def inference_cost(est: Any, d: int = N_FEATURES) -> tuple[float, float, int]:
    """(MACs per sample, learned/stored parameters, output dimension) of a fitted estimator.

    One multiply-add, one comparison or one distance term each count as one MAC; trees are
    charged their maximum depth (an upper bound on the comparisons a sample makes).
    """
    kind = type(est).__name__
    c = N_CLASSES
    if kind == "Pipeline":
        macs = params = 0.0
        for _, step in est.steps:
            m, p, d = inference_cost(step, d)
            macs, params = macs + m, params + p
        return macs, params, d
    if kind == "StandardScaler":
        return float(d), float(2 * d), d
    if kind == "PCA":
        k = int(est.n_components_)
        return float(d * k), float(d * k + d), k
    if kind == "PolynomialFeatures":
        out = int(est.n_output_features_)
        return float(out - d - 1), 0.0, out  # one multiply per product term
    if kind == "QuadraticDiscriminantAnalysis":
        ranks = [r.shape[1] for r in est.rotations_]
        return float(sum(d * r + r for r in ranks)), float(sum(d * r + r + d for r in ranks)), c
    if kind == "GaussianNB":
        return float(2 * c * d), float(2 * c * d + c), c
    if kind == "NearestCentroid":
        return float(c * d), float(c * d), c
    if kind == "KNeighborsClassifier":
        n = int(est.n_samples_fit_)
        return float(n * d), float(n * d), c  # brute-force distances to every stored sample
    if kind in ("SVC", "NuSVC"):
        n_sv = int(est.support_vectors_.shape[0])
        # kernel: one d-term dot/distance plus the kernel function per support vector;
        # one-vs-one: each support vector's dual coefficients enter c - 1 pair decisions.
        macs = n_sv * (d + 1) + n_sv * (c - 1)
        return float(macs), float(n_sv * d + n_sv * (c - 1) + c * (c - 1) // 2), c
    if kind in ("MLPClassifier",):
        macs = sum(w.size for w in est.coefs_)
        return float(macs), float(macs + sum(b.size for b in est.intercepts_)), c
    if kind == "DecisionTreeClassifier":
        depth, params = _tree_cost(est)
        return depth, params, c
    if kind in ("RandomForestClassifier", "ExtraTreesClassifier", "AdaBoostClassifier"):
        costs = [_tree_cost(t) for t in est.estimators_]
        # plus averaging the trees' class votes
        macs = sum(m for m, _ in costs) + len(costs) * c
        return float(macs), float(sum(p for _, p in costs)), c
    if kind == "GradientBoostingClassifier":
        costs = [_tree_cost(t) for t in est.estimators_.ravel()]
        return float(sum(m for m, _ in costs) + len(costs)), float(sum(p for _, p in costs)), c
    if kind == "HistGradientBoostingClassifier":
        macs = params = 0.0
        for trees in est._predictors:
            for pred in trees:
                leaves = int(pred.get_n_leaf_nodes())
                macs += pred.get_max_depth() + 1
                params += 2 * (len(pred.nodes) - leaves) + leaves
        return macs, params, c
    if hasattr(est, "coef_"):  # logistic, ridge, linear SVM, SGD, perceptron, LDA
        coef = np.atleast_2d(est.coef_)
        return float(coef.size), float(coef.size + coef.shape[0]), c
    raise ValueError(f"no MAC formula for {kind}; add one to inference_cost")


@dataclass(frozen=True)
class Zoo:
    candidates: list[Candidate]
    correct: dict[str, np.ndarray]  # shift name -> N_TARGET x K booleans
    families: list[str]
    seconds: float


FAMILIES = (  # name prefix -> family, first match wins
    ("knn", "k-NN"),
    ("nearest_centroid", "nearest centroid"),
    ("svc", "SVM"),
    ("nu_svc", "SVM"),
    ("linear_svc", "linear"),
    ("logreg", "linear"),
    ("ridge", "linear"),
    ("lda", "linear"),
    ("sgd", "linear"),
    ("perceptron", "linear"),
    ("gaussian_nb", "naive Bayes"),
    ("tree", "decision tree"),
    ("random_forest", "forest"),
    ("extra_trees", "forest"),
    ("gradient_boosting", "boosting"),
    ("hist_gradient_boosting", "boosting"),
    ("adaboost", "boosting"),
    ("mlp", "MLP"),
    ("", "pipeline"),
)


def family(name: str) -> str:
    return next(f for prefix, f in FAMILIES if name.startswith(prefix))


def build_zoo(shifts: dict[str, int], log: Callable[[str], None] = print) -> Zoo:
    """Train every model once; evaluate it on the card split and on each shifted target."""
    start = time.perf_counter()
    sp = load_splits()
    targets = {name: SHIFTS[name](sp.x_target, seed) / 16.0 for name, seed in shifts.items()}
    x_train, x_card = sp.x_train / 16.0, sp.x_card / 16.0
    candidates: list[Candidate] = []
    correct: dict[str, list[np.ndarray]] = {name: [] for name in shifts}
    names: list[str] = []
    for i, (name, est, share) in enumerate(model_specs()):
        if share < 1.0:
            split = sk("sklearn.model_selection.train_test_split")
            xs, _, ys, _ = split(
                x_train, sp.y_train, train_size=share, stratify=sp.y_train, random_state=MODEL_SEED
            )
        else:
            xs, ys = x_train, sp.y_train
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            # Some recipes (tiny C, 25% subsets) stop before converging: a zoo has those too.
            warnings.simplefilter("ignore")
            est.fit(xs, ys)
        macs, params, _ = inference_cost(est)
        card = float(np.mean(est.predict(x_card) == sp.y_card))
        for shift, x in targets.items():
            correct[shift].append(np.asarray(est.predict(x) == sp.y_target))
        candidates.append(
            Candidate(
                name=name,
                size_bytes=float(len(pickle.dumps(est, protocol=5))),
                macs=macs,
                params=round(params),
                benchmark_accuracy=card,
                license="BSD-3-Clause",
            )
        )
        names.append(name)
        log(f"  [{i + 1:3d}] {name:32s} card {card:.3f}  {time.perf_counter() - t0:5.1f}s")
    return Zoo(
        candidates=candidates,
        correct={k: np.column_stack(v) for k, v in correct.items()},
        families=[family(n) for n in names],
        seconds=time.perf_counter() - start,
    )
