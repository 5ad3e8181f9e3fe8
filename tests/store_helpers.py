"""A tiny real model repository for the crash-safety tests: linear nets on 8x8 grey images
that sleep while a gate file exists (so a run can be killed mid-way) and log the size of
every forward pass to a file (so a test counts the inference a process really did)."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

from tests.web_helpers import CLASSES, image_folder_files


def counting(log: str = "", gate: str = "", delay: float = 0.0, seed: int = 0) -> Any:
    """A linear classifier whose forward pass appends its batch size to ``log`` and sleeps
    ``delay`` seconds while the file ``gate`` exists."""
    import torch
    from torch import nn

    class CountingNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(seed)
            self.head = nn.Linear(64, len(CLASSES))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if log:
                with open(log, "a", encoding="utf-8") as fh:
                    fh.write(f"{x.shape[0]}\n")
            if gate and Path(gate).exists():
                time.sleep(delay)
            out: torch.Tensor = self.head(x.flatten(1))
            return out

    return CountingNet()


def write_counting_repository(
    folder: Path, *, log: Path, gate: Path, delay: float, n_models: int = 4, n_samples: int = 90
) -> tuple[Path, Path]:
    """Writes a manifest repository of counting nets and an ImageFolder of noise photos
    under ``folder``; returns (manifest, data folder)."""
    import torch

    lines = ['[repository]\nname = "counting"\nclasses_file = "classes.txt"\n']
    for k in range(n_models):
        buf = io.BytesIO()
        torch.save(counting(seed=k).state_dict(), buf)
        (folder / "weights").mkdir(parents=True, exist_ok=True)
        (folder / f"weights/net{k}.pt").write_bytes(buf.getvalue())
        lines.append(
            f'[[models]]\nname = "net{k}"\nformat = "torch_state_dict"\n'
            f'path = "weights/net{k}.pt"\nbuilder = "tests.store_helpers:counting"\n'
            f'builder_args = {{ log = "{log}", gate = "{gate}", delay = {delay}, seed = {k} }}\n'
            "[models.preprocessing]\nsize = [8, 8]\nchannels = 1\n"
        )
    (folder / "classes.txt").write_text("\n".join(CLASSES) + "\n", encoding="utf-8")
    manifest = folder / "manifest.toml"
    manifest.write_text("\n".join(lines), encoding="utf-8")
    for name, data in image_folder_files(n_samples).items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return manifest, folder / "target"


def forwarded(log: Path) -> int:
    """Samples passed through the models since ``log`` was last cleared."""
    if not log.exists():
        return 0
    return sum(int(line) for line in log.read_text(encoding="utf-8").split())
