"""Real inference as an evaluator: real models on a real target dataset, every pair once.

:func:`prepare_models` does everything that can fail on the user's input before any
compute is spent (class names, label mapping), then loads and measures each model (size,
parameters, MACs per sample; measurements are cached by model key). A model that
cannot be loaded or run is reported as unavailable with its reason and left out; the rest
go on. :class:`InferenceEvaluator` then answers the engine's calls: one pull of a model on
k samples is one batched forward pass, in chunks of ``batch_size`` samples or fewer: no
chunk's input array is over ``batch_bytes`` (:func:`batch_rows`), whatever the model's
input size. The batch is built one sample at a time: each image is decoded (a very large
one at a reduced scale), prepared to the model's input and released before the next is
decoded, so memory holds at most one full-size image besides the batch. Samples are
decoded once per input size and prepared once per preprocessing setting (memoised within a
byte budget), and predictions are cached on disk under a key that covers everything that
decides them (see :mod:`greenrunner.evaluation.cache`), so a second run on the same models,
settings and data costs no inference at all.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from greenrunner.adapters.base import Adapter, Measurements, ModelSpec, load_adapter
from greenrunner.candidates import Candidate
from greenrunner.datasets.base import TargetDataset
from greenrunner.datasets.labels import LabelMap, build_label_map
from greenrunner.errors import DataError
from greenrunner.evaluation.base import EvaluationError
from greenrunner.evaluation.cache import PredictionCache
from greenrunner.preprocessing import Preprocessing, prepare

log = logging.getLogger(__name__)

# stage ("loading", "evaluating"), done, total, detail
ProgressFn = Callable[[str, int, int, str], None]

# Decoded and prepared samples are memoised up to this many bytes each (LRU beyond it).
MEMO_BYTES = 1 << 30
# A decoded image or prepared sample larger than this is not memoised: it is made again if
# needed, rather than a few of them filling the memo (about 10 MP decoded in RGB, 2.8 MP
# prepared).
MEMO_IMAGE_BYTES = 32 << 20
# No batch's input array is larger than this: a model with large inputs gets fewer samples
# per forward pass (down to one), not a larger array.
BATCH_BYTES = 256 << 20


def batch_rows(spec: Preprocessing, batch_size: int, budget: int = BATCH_BYTES) -> int:
    """Samples per forward pass: ``batch_size``, or fewer where that many prepared samples
    would be over ``budget`` bytes; at least one."""
    return max(1, min(batch_size, budget // spec.sample_bytes))


class _ByteLRU:
    """A dict of arrays that forgets the least recently used entries beyond a byte budget."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[object, np.ndarray] = OrderedDict()
        self._bytes = 0

    def get(self, key: object) -> np.ndarray | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: object, value: np.ndarray) -> None:
        if key in self._items:
            return
        self._items[key] = value
        self._bytes += value.nbytes
        while self._bytes > self.max_bytes and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            self._bytes -= old.nbytes


@dataclass
class _Model:
    spec: ModelSpec
    label_map: LabelMap
    key: str  # spec.cache_key(): what the cache files its predictions and measurements under


@dataclass
class InferenceEvaluator:
    """Implements :class:`greenrunner.evaluation.Evaluator` with real inference."""

    dataset: TargetDataset
    models: dict[str, _Model]
    cache: PredictionCache | None = None
    batch_size: int = 64
    max_loaded: int = 4  # models kept in memory at once
    batch_bytes: int = BATCH_BYTES  # the largest input array of one forward pass
    progress: ProgressFn | None = None
    served_from_cache: int = 0
    computed: int = 0
    _adapters: OrderedDict[str, Adapter] = field(default_factory=OrderedDict)
    _decoded_memo: _ByteLRU = field(default_factory=lambda: _ByteLRU(MEMO_BYTES))
    _prepared: _ByteLRU = field(default_factory=lambda: _ByteLRU(MEMO_BYTES))
    _data_fp: str = ""

    def __post_init__(self) -> None:
        self._data_fp = self.dataset.fingerprint()
        self._labels = np.asarray(self.dataset.labels)

    @property
    def n_samples(self) -> int:
        return len(self.dataset)

    def cache_stats(self) -> dict[str, int]:
        return {"served": self.served_from_cache, "computed": self.computed}

    def merge_cache_stats(self, stats: Mapping[str, int], candidate: Candidate) -> None:
        """Count evaluations a remote copy of this evaluator ran (the Ray executor)."""
        self.served_from_cache += int(stats.get("served", 0))
        self.computed += int(stats.get("computed", 0))
        if self.progress:
            done = self.computed + self.served_from_cache
            self.progress("evaluating", done, 0, candidate.name)

    def for_model(self, name: str) -> InferenceEvaluator:
        """A fresh evaluator for one model (a Ray worker's), sharing the data and the cache."""
        if name not in self.models:
            raise EvaluationError(f"no model named {name!r} in this repository")
        return InferenceEvaluator(
            self.dataset,
            {name: self.models[name]},
            cache=self.cache,
            batch_size=self.batch_size,
            max_loaded=1,
            batch_bytes=self.batch_bytes,
        )

    # Pickled (shipped to a remote worker) without what belongs to this process: loaded
    # models, the decoded-sample memos, the progress callback and the counters.
    def __getstate__(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "models": self.models,
            "cache": self.cache,
            "batch_size": self.batch_size,
            "max_loaded": self.max_loaded,
            "batch_bytes": self.batch_bytes,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def adapter(self, name: str) -> Adapter:
        """The loaded model, loading it (and evicting the least recently used) if needed."""
        if name in self._adapters:
            self._adapters.move_to_end(name)
            return self._adapters[name]
        adapter = load_adapter(self.models[name].spec)
        self._adapters[name] = adapter
        while len(self._adapters) > self.max_loaded:
            self._adapters.popitem(last=False)
        return adapter

    def _decoded(self, i: int, fit: tuple[int, int]) -> np.ndarray:
        """Sample i decoded to cover ``fit``: memoised unless large (a very large image is
        decoded at a reduced scale that depends on ``fit``, hence the key)."""
        image = self._decoded_memo.get((i, fit))
        if image is None:
            image = self.dataset.load(np.asarray([i]), fit=fit)[0]
            if image.nbytes <= MEMO_IMAGE_BYTES:
                self._decoded_memo.put((i, fit), image)
        return image

    def _sample(self, spec: Preprocessing, setting: str, i: int) -> np.ndarray:
        """Sample i prepared for ``spec``; the decoded image lives only in this call (or in
        the memo, if small), so it is released before the next sample is decoded."""
        x = self._prepared.get((setting, i))
        if x is None:
            x = prepare([self._decoded(i, spec.fit)], spec)[0]
            if x.nbytes <= MEMO_IMAGE_BYTES:  # a huge input is prepared again if needed
                self._prepared.put((setting, i), x)
        return x

    def identity(self, name: str) -> str:
        """What decides model ``name``'s correctness on this data: its cache key (weights,
        preprocessing, classes, library versions) and its label map. The store compares
        these on resume, so observations made under other settings are never mixed in."""
        model = self.models[name]
        return f"{model.key}|{model.label_map.digest()}"

    def batch(self, spec: Preprocessing, ids: Sequence[int]) -> np.ndarray:
        """The prepared input batch for the samples, built one sample at a time."""
        setting = spec.fingerprint()
        out = np.empty((len(ids), *spec.sample_shape), np.float32)
        for row, i in enumerate(ids):
            out[row] = self._sample(spec, setting, i)
        return out

    def predict(self, name: str, ids: Sequence[int]) -> np.ndarray:
        """Predicted model-class index per sample (with the label map's restriction)."""
        model = self.models[name]
        adapter = self.adapter(name)
        n_classes = len(model.label_map.model_classes)
        preds = np.empty(len(ids), dtype=np.int64)
        rows = batch_rows(adapter.preprocessing, self.batch_size, self.batch_bytes)
        for start in range(0, len(ids), rows):
            chunk = list(ids[start : start + rows])
            logits = adapter.predict(self.batch(adapter.preprocessing, chunk))
            if logits.shape != (len(chunk), n_classes):
                raise EvaluationError(
                    f"model {name!r} returned outputs of shape {logits.shape}; expected "
                    f"({len(chunk)}, {n_classes}), one score per class"
                )
            if not np.all(np.isfinite(logits)):
                raise EvaluationError(f"model {name!r} returned NaN or infinite scores")
            preds[start : start + len(chunk)] = model.label_map.predict(logits)
        return preds

    def evaluate(self, candidate: Candidate, sample_ids: np.ndarray) -> np.ndarray:
        name = candidate.name
        model = self.models.get(name)
        if model is None:
            raise EvaluationError(f"no model named {name!r} in this repository")
        ids = [int(i) for i in sample_ids]
        view = model.label_map.view()
        n_classes = len(model.label_map.model_classes)  # a cached index must be below it
        found = (
            self.cache.get(model.key, self._data_fp, view, np.asarray(ids), n_classes)
            if self.cache
            else {}
        )
        missing = [i for i in ids if i not in found]
        if missing:
            preds = self.predict(name, missing)
            if self.cache:
                self.cache.put(model.key, self._data_fp, view, np.asarray(missing), preds)
            found.update(zip(missing, (int(p) for p in preds), strict=True))
        self.served_from_cache += len(ids) - len(missing)
        self.computed += len(missing)
        if self.progress:
            self.progress("evaluating", self.computed + self.served_from_cache, 0, name)
        pred = np.array([found[i] for i in ids], dtype=np.int64)
        return np.asarray(model.label_map.is_correct(pred, self._labels[ids]), dtype=bool)


def measure(
    spec: ModelSpec,
    load: Callable[[], Adapter],
    cache: PredictionCache | None,
    key: str | None = None,
) -> Measurements:
    """The model's size, parameters and MACs per sample, from the cache when known (under
    the model's cache key: the MACs depend on the input size, not only the weights)."""
    fp = key or spec.cache_key()
    measured = cache.measurements(fp) if cache else None
    if measured is None:
        measured = load().measure()
        if cache:
            cache.put_measurements(fp, measured)
    return measured


def measure_models(
    specs: Sequence[ModelSpec],
    *,
    cache: PredictionCache | None = None,
    progress: ProgressFn | None = None,
) -> list[dict[str, object]]:
    """One row per model for ``greenrunner inspect``: measured metadata or why it failed."""
    rows: list[dict[str, object]] = []
    for done, spec in enumerate(specs):
        if progress:
            progress("measuring", done, len(specs), spec.name)
        row: dict[str, object] = {
            "name": spec.name,
            "format": spec.format,
            "card_accuracy": spec.card_accuracy,
            "license": spec.license,
        }
        try:
            m = measure(spec, lambda spec=spec: load_adapter(spec), cache)  # type: ignore[misc]
        except EvaluationError as exc:
            rows.append({**row, "status": "failed", "note": str(exc)})
            continue
        rows.append(
            {
                **row,
                "size_mb": m.size_bytes / 1e6,
                "mmacs": m.macs / 1e6,
                "params_m": m.params / 1e6,
                "status": "ok",
                "note": m.macs_note,
            }
        )
    if progress:
        progress("measuring", len(specs), len(specs), "")
    return rows


@dataclass(frozen=True)
class PreparedModels:
    candidates: list[Candidate]
    evaluator: InferenceEvaluator
    unavailable: dict[str, str]  # model name -> why it could not be loaded or run


def _check_classes(
    specs: Sequence[ModelSpec],
    dataset: TargetDataset,
    mapping: Mapping[str, Sequence[str]] | None,
    restrict: bool,
) -> dict[str, LabelMap]:
    maps: dict[tuple[str, ...], LabelMap] = {}
    out = {}
    for spec in specs:
        if spec.classes is None:
            raise DataError(
                f"model {spec.name!r} has no class names; give classes or classes_file in "
                "the manifest (or a classes.txt beside the ONNX files)"
            )
        if spec.classes not in maps:
            try:
                maps[spec.classes] = build_label_map(
                    dataset.class_names, spec.classes, mapping, restrict
                )
            except DataError as exc:
                raise DataError(f"model {spec.name!r}: {exc}") from None
        out[spec.name] = maps[spec.classes]
    return out


def prepare_models(
    specs: Sequence[ModelSpec],
    dataset: TargetDataset,
    *,
    mapping: Mapping[str, Sequence[str]] | None = None,
    restrict: bool = False,
    cache: PredictionCache | None = None,
    batch_size: int = 64,
    progress: ProgressFn | None = None,
) -> PreparedModels:
    """Check, load and measure every model; return candidates and the evaluator."""
    if len(dataset) == 0:
        raise DataError(f"the target dataset {dataset.name!r} has no samples")
    label_maps = _check_classes(specs, dataset, mapping, restrict)
    evaluator = InferenceEvaluator(
        dataset,
        {s.name: _Model(s, label_maps[s.name], s.cache_key()) for s in specs},
        cache=cache,
        batch_size=batch_size,
        progress=progress,
    )
    candidates, unavailable = [], {}
    for done, spec in enumerate(specs):
        if progress:
            progress("loading", done, len(specs), spec.name)

        def load(name: str = spec.name) -> Adapter:
            adapter = evaluator.adapter(name)
            # One real sample through the model: a wrong output width or a crash shows now,
            # not in the middle of the run.
            evaluator.predict(name, [0])
            return adapter

        try:
            measured = measure(spec, load, cache, evaluator.models[spec.name].key)
        except EvaluationError as exc:
            log.warning("%s", exc)
            unavailable[spec.name] = str(exc)
            continue
        candidates.append(
            Candidate(
                name=spec.name,
                size_bytes=float(measured.size_bytes),
                macs=measured.macs,
                params=measured.params,
                benchmark_accuracy=spec.card_accuracy,
                license=spec.license,
                metrics=dict(spec.extra),
            )
        )
    if progress:
        progress("loading", len(specs), len(specs), "")
    return PreparedModels(candidates, evaluator, unavailable)
