"""Rebuild the replays shipped in the package (src/greenrunner/data/replays).

    python scripts/build_bundled_replays.py

Deterministic: the same seed writes the same files.
"""

from __future__ import annotations

from pathlib import Path

from greenrunner.repositories.replay import write_replay
from greenrunner.simulate import objectnet_sim

ROOT = Path(__file__).resolve().parents[1] / "src" / "greenrunner" / "data" / "replays"

OBJECTNET_README = """\
# objectnet-sim: SIMULATED per-image results of 31 torchvision models on 105 ObjectNet-like images

The paper's setting rebuilt from public figures. Sizes, MACs, parameters and model-card
(ImageNet) accuracies are torchvision's. Each model's accuracy on the 105 target images is
its ObjectNet top-1 from the imagenet-testbed (Taori et al. 2020, MIT licence). Which
images each model gets right is SIMULATED with an item-response model (easy images right
for all, hard ones split the models), so the models agree as real ones do. It shows how
strategies behave; it is not a measurement of these models.

Rebuild with `python scripts/build_bundled_replays.py` (seed 0).
"""


def main() -> None:
    candidates, correct = objectnet_sim(seed=0, n_samples=105)
    write_replay(ROOT / "objectnet-sim", candidates, correct, OBJECTNET_README)
    print(f"wrote {ROOT / 'objectnet-sim'}: {correct.shape[1]} models x {correct.shape[0]} samples")


if __name__ == "__main__":
    main()
