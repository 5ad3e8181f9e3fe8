"""Open a model repository from what the user points at.

- a ``.toml`` manifest, or a folder holding ``manifest.toml``;
- a folder of ``.onnx`` files (with ``classes.txt``; no configuration);
- ``torchvision`` (the whole catalogue) or ``torchvision:cached`` (weights already cached).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from greenrunner.adapters.base import ModelSpec
from greenrunner.errors import DataError


@dataclass(frozen=True)
class ModelRepository:
    name: str
    description: str
    specs: tuple[ModelSpec, ...]


def open_models(where: str | Path) -> ModelRepository:
    text = str(where)
    if text in ("torchvision", "torchvision:cached"):
        from greenrunner.repositories.torchvision_catalogue import catalogue

        specs = catalogue(available_only=text.endswith(":cached"))
        if not specs:
            raise DataError(
                "no torchvision weights are in the torch cache; use --models torchvision "
                "on a machine with a network, or copy weights into the cache first"
            )
        return ModelRepository(text, "torchvision classification weights", tuple(specs))
    path = Path(text).expanduser()
    if path.is_dir() and (path / "manifest.toml").is_file():
        path = path / "manifest.toml"
    if path.is_file() and path.suffix == ".toml":
        from greenrunner.repositories.manifest import load_manifest

        name, description, specs = load_manifest(path)
        return ModelRepository(name, description, tuple(specs))
    if path.is_dir():
        from greenrunner.repositories.onnx_folder import load_onnx_folder

        return ModelRepository(path.name, f"ONNX models in {path}", tuple(load_onnx_folder(path)))
    if not path.exists():
        raise DataError(f"--models {text}: no such file or folder")
    raise DataError(
        f"--models {text}: expected a manifest (.toml), a folder with manifest.toml or .onnx "
        "files, or 'torchvision'"
    )
