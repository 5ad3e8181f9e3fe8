"""The target-dataset seam: N labelled samples, decoded on demand."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class TargetDataset(Protocol):
    """A labelled target set.

    ``labels[i]`` is the index into ``class_names`` of sample i. ``load`` decodes the
    given samples into uint8 arrays (H x W grey or H x W x 3 RGB); the evaluator calls it
    one sample at a time, with ``fit`` the (width, height) the image is about to be
    resized to cover, so a very large image may be decoded at a reduced scale that still
    covers it (datasets already in memory ignore it). ``fingerprint`` identifies the
    content (files and labels), so cached predictions follow the data, not its path.
    """

    @property
    def name(self) -> str: ...

    @property
    def class_names(self) -> tuple[str, ...]: ...

    @property
    def labels(self) -> np.ndarray: ...

    def __len__(self) -> int: ...

    def load(self, ids: np.ndarray, *, fit: tuple[int, int] | None = None) -> list[np.ndarray]: ...

    def fingerprint(self) -> str: ...
