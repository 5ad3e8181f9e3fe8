"""Do the MACs GreenRunner measures agree with torchvision's published figures?

    python benchmarks/mac_agreement.py [--all] [--quick]

For torchvision classification weights (architectures built without downloading any
weights), measures MACs per image the way the torch adapter does (PyTorch's FLOP counter
with autograd enabled, halved) at each weights' evaluation crop, and compares with the
``_ops`` (GMACs) torchvision publishes in the weights' metadata. By default one weight per
architecture family (25 architectures); ``--all`` measures all 115 weights (slow: the
largest models take minutes and several GB of memory). Writes
benchmarks/results/mac_agreement.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import _common as common
from greenrunner.adapters.torch import TorchAdapter
from greenrunner.adapters.torchvision import preprocessing_of

SPREAD = (
    "alexnet",
    "convnext_tiny",
    "densenet121",
    "efficientnet_b0",
    "efficientnet_v2_s",
    "googlenet",
    "inception_v3",
    "maxvit_t",
    "mnasnet0_5",
    "mobilenet_v2",
    "mobilenet_v3_large",
    "mobilenet_v3_small",
    "regnet_x_400mf",
    "regnet_y_1_6gf",
    "resnet18",
    "resnet50",
    "resnext50_32x4d",
    "shufflenet_v2_x1_0",
    "squeezenet1_1",
    "swin_t",
    "swin_v2_t",
    "vgg11",
    "vit_b_16",
    "vit_b_32",
    "wide_resnet50_2",
)


def measure(builder: str, weights: Any) -> dict[str, Any]:
    import torchvision

    module = torchvision.models.get_model(builder, weights=None)
    t0 = time.perf_counter()
    m = TorchAdapter(builder, module, preprocessing_of(weights), None).measure()
    published = float(weights.meta["_ops"]) * 1e9
    return {
        "weights": f"{builder}.{weights.name}",
        "crop": preprocessing_of(weights).size[0],
        "measured_gmacs": round(m.macs / 1e9, 4),
        "published_gmacs": float(weights.meta["_ops"]),
        "relative_error": round(m.macs / published - 1, 5),
        "params_measured": m.params,
        "params_published": int(weights.meta["num_params"]),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def main(argv: list[str] | None = None) -> int:
    import torchvision

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="all 115 weights (slow)")
    parser.add_argument("--quick", action="store_true", help="five architectures")
    args = parser.parse_args(argv)
    builders = (
        sorted(torchvision.models.list_models(module=torchvision.models))
        if args.all
        else SPREAD[:5]
        if args.quick
        else SPREAD
    )
    rows = []
    for builder in builders:
        enum = torchvision.models.get_model_weights(builder)
        chosen = list(enum) if args.all else [enum.DEFAULT]
        for w in chosen:
            row = measure(builder, w)
            rows.append(row)
            print(
                f"{row['weights']:50s} {row['measured_gmacs']:9.3f} {row['published_gmacs']:9.3f}"
                f" {row['relative_error']:+.2%}",
                flush=True,
            )
    worst = max(rows, key=lambda r: abs(r["relative_error"]))
    within = sum(abs(r["relative_error"]) <= 0.02 for r in rows)
    stem = "mac_agreement_quick" if args.quick else "mac_agreement"
    common.RESULTS.mkdir(exist_ok=True)
    (common.RESULTS / f"{stem}.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = [
        "# MACs measured by GreenRunner vs torchvision's published `_ops`",
        "",
        f"Reproduce: `{common.command_line()}` (code {common.code_version()})",
        "",
        f"{within} of {len(rows)} weights within 2%; the largest difference is "
        f"{worst['relative_error']:+.2%} ({worst['weights']}). Measured: PyTorch's FLOP "
        "counter with autograd enabled (so fused attention is counted), halved, on one "
        "image at the weights' evaluation crop.",
        "",
        common.table(
            ["weights", "crop", "measured GMACs", "published GMACs", "difference", "params"],
            [
                [
                    r["weights"],
                    r["crop"],
                    f"{r['measured_gmacs']:.3f}",
                    f"{r['published_gmacs']:.3f}",
                    f"{r['relative_error']:+.2%}",
                    "same" if r["params_measured"] == r["params_published"] else "differs",
                ]
                for r in rows
            ],
        ),
    ]
    (common.RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print(f"{within}/{len(rows)} within 2%; wrote {common.RESULTS / stem}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
