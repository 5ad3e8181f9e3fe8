"""The published ccexam digit networks, added to the demo zoo as they ship where installed."""

from __future__ import annotations

import importlib.resources
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

from greenrunner.demo.data import DigitSplits, render
from greenrunner.demo.manifest import Entry
from greenrunner.demo.train import accuracy, measure
from greenrunner.preprocessing import Preprocessing, prepare

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class External:
    """A published network from the ccexam package, used as it ships."""

    name: str
    builder: str
    input_size: int
    weights: str  # file inside the installed package
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


# ccexam's own preprocessing (ccexam.constants.DATASET_STATS and ccexam.inference): grey
# 28x28 for MNIST, grey 16x16 for USPS, RGB 32x32 for SVHN, each with its own mean/std.
EXTERNAL = (
    External("ccexam_mnist", "ccexam.models:MNISTNet", 28, "mnist.pth", 1, (0.1307,), (0.3081,)),
    External("ccexam_usps", "ccexam.models:USPSNet", 16, "usps.pth", 1, (0.2471,), (0.2994,)),
    External(
        "ccexam_svhn",
        "ccexam.models:SVHNNet",
        32,
        "svhn.pth",
        3,
        (0.4377, 0.4438, 0.4728),
        (0.1980, 0.2010, 0.1970),
    ),
)


def external_entries(splits: DigitSplits) -> list[Entry]:
    """The ccexam networks that load safely, or none (logged) where ccexam is missing."""
    if importlib.util.find_spec("ccexam") is None:
        log.info("ccexam is not installed: the demo zoo goes without its three digit networks")
        return []
    import torch

    from greenrunner.adapters.torch import import_builder

    clean_val = list(render(splits.val.images))
    entries = []
    for ext in EXTERNAL:
        path = Path(str(importlib.resources.files("ccexam") / "weights" / ext.weights))
        prep = Preprocessing(
            size=(ext.input_size, ext.input_size),
            channels=ext.channels,
            mean=ext.mean,
            std=ext.std,
        )
        try:
            model = import_builder(ext.builder, ext.name)(input_size=ext.input_size)
            # map_location: the files were saved from a GPU; weights_only: tensors, no code.
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except Exception as exc:  # a changed ccexam release must not break the demo
            log.warning("skipping %s: cannot load %s: %s", ext.name, path, exc)
            continue
        model.eval()
        # ccexam's model cards report accuracy on its own MNIST/USPS/SVHN test sets; those
        # numbers are not comparable with our zoo's, so the card here is the accuracy on
        # the same clean-source validation digits every other model's card uses.
        card = accuracy(model, prepare(clean_val, prep), splits.val.labels)
        params, macs = measure(model, prep)
        entries.append(
            Entry(
                ext.name,
                str(path),
                ext.builder,
                {"input_size": ext.input_size},
                card,
                prep,
                params,
                macs,
                f"ccexam {ext.weights} as published (trained on {ext.weights[:-4].upper()})",
            )
        )
    return entries
