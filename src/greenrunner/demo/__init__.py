"""The bundled real demo: a zoo of digit classifiers trained here, and a shifted target.

Everything is built offline from scikit-learn's bundled ``load_digits``: :func:`ensure_demo`
trains the zoo once (about a minute on two cores), writes a manifest repository and an
ImageFolder target into the cache, and returns the folder immediately on later calls.
"""

from __future__ import annotations

from greenrunner.demo.build import build_demo, demo_dir, ensure_demo

__all__ = ["build_demo", "demo_dir", "ensure_demo"]
