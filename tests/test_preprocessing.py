"""Preparing decoded images for a model's input contract."""

from __future__ import annotations

import numpy as np
import pytest

from greenrunner.errors import ConfigError
from greenrunner.preprocessing import Preprocessing, prepare


def test_grey_to_rgb_scaling_and_normalisation() -> None:
    img = np.full((4, 4), 255, dtype=np.uint8)
    out = prepare([img], Preprocessing(size=(4, 4), channels=3, mean=(0.5,), std=(0.25,)))
    assert out.shape == (1, 3, 4, 4) and out.dtype == np.float32
    np.testing.assert_allclose(out, 2.0)


def test_rgb_to_grey_and_nhwc() -> None:
    img = np.zeros((6, 6, 3), dtype=np.uint8)
    out = prepare([img], Preprocessing(size=(3, 3), channels=1, layout="NHWC"))
    assert out.shape == (1, 3, 3, 1)


def test_resize_then_centre_crop_keeps_the_centre() -> None:
    img = np.zeros((20, 40), dtype=np.uint8)
    img[:, 15:25] = 255  # a bright vertical band in the middle
    out = prepare([img], Preprocessing(size=(10, 10), channels=1, resize=10))
    # The shorter side becomes 10 (so 10 x 20), and the centre 10 x 10 is the band +- 2.5.
    assert out.shape == (1, 1, 10, 10)
    assert out[0, 0, 5, 5] == pytest.approx(1.0)
    assert out[0, 0, 5, 0] == pytest.approx(0.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"size": (0, 4)}, "two positive integers"),
        ({"size": (4, 4), "channels": 2}, "channels must be 1"),
        ({"size": (4, 4), "mean": (0.1, 0.2)}, "mean must have 1 or 3"),
        ({"size": (4, 4), "std": (0.0,)}, "std values must be positive"),
        ({"size": (8, 8), "resize": 4}, "resize"),
        ({"size": (4, 4), "layout": "CHW"}, "layout"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Preprocessing(**kwargs)  # type: ignore[arg-type]


def test_fingerprints_tell_settings_apart() -> None:
    a = Preprocessing(size=(4, 4))
    assert a.fingerprint() == Preprocessing(size=(4, 4)).fingerprint()
    assert a.fingerprint() != Preprocessing(size=(4, 4), channels=1).fingerprint()
