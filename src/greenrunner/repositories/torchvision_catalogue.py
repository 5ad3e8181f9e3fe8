"""The torchvision catalogue: every classification weight torchvision ships, by name.

The catalogue itself needs no download: builders, weights ids, card accuracy (ImageNet-1K
acc@1), licence and preprocessing come with torchvision. Only evaluating a model needs its
weights file, which torch downloads to its cache when there is a network; with
``available_only`` the catalogue lists just the weights already in that cache.
"""

from __future__ import annotations

from greenrunner.adapters.base import ModelSpec, require

# torchvision's default licence; SWAG weights say otherwise in their _docs / recipe.
_DEFAULT_LICENSE = "BSD-3-Clause"


def catalogue(available_only: bool = False) -> list[ModelSpec]:
    """One spec per classification weight: 114 in torchvision 0.29 (of its 115 weights,
    vgg16's IMAGENET1K_FEATURES has no classifier and is left out)."""
    require("torchvision", "torch")
    import torchvision

    from greenrunner.adapters.torchvision import checkpoint_path

    specs = []
    for builder in sorted(torchvision.models.list_models(module=torchvision.models)):
        for weights in torchvision.models.get_model_weights(builder):
            if not weights.meta.get("categories"):
                # vgg16's IMAGENET1K_FEATURES: a feature extractor with no classifier head.
                continue
            if available_only and not checkpoint_path(weights).is_file():
                continue
            acc = weights.meta.get("_metrics", {}).get("ImageNet-1K", {}).get("acc@1")
            swag = "SWAG" in weights.name
            specs.append(
                ModelSpec(
                    name=f"{builder}.{weights.name}",
                    format="torchvision",
                    builder=builder,
                    weights=weights.name,
                    classes=tuple(weights.meta["categories"]),
                    card_accuracy=None if acc is None else float(acc) / 100,
                    license="CC-BY-NC-4.0" if swag else _DEFAULT_LICENSE,
                )
            )
    return specs
