"""The bundled repositories and datasets, kept in the database beside the uploaded ones.

Every bundled replay (``objectnet-sim``) is a repository of kind ``replay``. The digits demo
zoo is ``digits-demo`` (kind ``bundled-real``) with its shifted target ``digits-demo-target``;
it is trained on first use by the run that needs it (about a minute), never in a request,
so its model and sample counts are unknown (None) until then.
"""

from __future__ import annotations

import importlib.util
import logging
import tomllib
from pathlib import Path

from sqlalchemy.orm import Session

from greenrunner.web.db import DatasetRow, RepositoryRow

log = logging.getLogger(__name__)

DEMO_REPOSITORY = "digits-demo"
DEMO_DATASET = "digits-demo-target"
_IMAGE_SUFFIXES = (".png",)


def demo_available() -> bool:
    """The demo trains with torch and scikit-learn and writes PNGs with Pillow."""
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "sklearn", "PIL"))


def demo_folder() -> Path:
    from greenrunner.demo.build import demo_dir

    return demo_dir()


def sync_bundled(session: Session) -> None:
    """Insert or refresh the rows of everything bundled with this installation."""
    from greenrunner.repositories.replay import bundled_replays, read_models_csv

    for name, path in bundled_replays().items():
        try:
            count: int | None = len(read_models_csv(path / "models.csv"))
        except Exception as exc:  # a broken bundled file must not stop the server
            log.warning("bundled replay %s is unreadable: %s", name, exc)
            continue
        description = _first_paragraph(path / "README.md")
        session.merge(
            RepositoryRow(
                id=name,
                name=name,
                kind="replay",
                path=str(path),
                description=description,
                n_models=count,
            )
        )
    if not demo_available():
        log.info("the digits demo needs 'greenrunner[demo]'; it is not offered")
        return
    folder = demo_folder()
    if session.get(RepositoryRow, DEMO_REPOSITORY) is None:
        session.add(
            RepositoryRow(
                id=DEMO_REPOSITORY,
                name=DEMO_REPOSITORY,
                kind="bundled-real",
                path=str(folder),
                description="Real digit classifiers (PyTorch) trained on clean digits, to be "
                "chosen for a shifted target; trained on first use (about a minute)",
            )
        )
        session.add(
            DatasetRow(
                id=DEMO_DATASET,
                name=DEMO_DATASET,
                kind="bundled",
                path=str(folder / "target"),
                description="809 real digits, rotated, blurred, faded and noisy "
                "(an ImageFolder of 28x28 PNGs), made with the demo zoo",
            )
        )
    refresh_demo(session)


def refresh_demo(session: Session) -> None:
    """Fill in the demo's counts once it has been built (cheap: a manifest and a listing)."""
    repo = session.get(RepositoryRow, DEMO_REPOSITORY)
    data = session.get(DatasetRow, DEMO_DATASET)
    if repo is None or data is None or (repo.n_models is not None and data.n_samples):
        return
    folder = demo_folder()
    manifest = folder / "manifest.toml"
    if not manifest.is_file():
        return
    try:
        repo.n_models = len(tomllib.loads(manifest.read_text(encoding="utf-8"))["models"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return
    target = folder / "target"
    classes = sorted(p.name for p in target.iterdir() if p.is_dir())
    data.classes = classes
    data.n_samples = sum(
        1 for c in classes for p in (target / c).iterdir() if p.suffix in _IMAGE_SUFFIXES
    )


def _first_paragraph(readme: Path) -> str:
    """The first prose paragraph of a bundled README, as the repository's description."""
    try:
        text = readme.read_text(encoding="utf-8")
    except OSError:
        return ""
    for block in text.split("\n\n"):
        block = " ".join(block.split())
        if block and not block.startswith("#"):
            return block if len(block) <= 1000 else block[:999] + "…"
    return ""
