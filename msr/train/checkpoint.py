"""Checkpoints: a folder with model.safetensors, tokenizer.json, meta.json and trainer_state.pt.

A checkpoint is written whole into a temporary folder and then renamed into place, so
`checkpoints/last` is always a complete checkpoint (for the instant between two renames it is
`checkpoints/.last.old`, and the next save puts it back if a crash struck there). Nothing in it is unpickled on load:
weights come from safetensors, the trainer state through torch.load(weights_only=True).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model
from torch import nn

from msr.data.tokenizer import TextTokenizer
from msr.runs import fsync_path

FORMAT_VERSION = 1


def save_checkpoint(directory: Path, model: nn.Module, tokenizer: TextTokenizer, meta: dict,
                    trainer_state: dict | None = None) -> None:
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.with_name(f".{directory.name}.tmp")
    old = directory.with_name(f".{directory.name}.old")
    if old.exists() and not directory.exists():  # a crash struck between the two renames below
        old.rename(directory)
    for stale in (tmp, old):  # left by a run that was killed while saving
        shutil.rmtree(stale, ignore_errors=True)
    tmp.mkdir()
    try:
        save_model(model, str(tmp / "model.safetensors"))
        (tmp / "tokenizer.json").write_text(tokenizer.to_str())
        (tmp / "meta.json").write_text(json.dumps({"format": FORMAT_VERSION, **meta}, indent=2))
        if trainer_state is not None:
            torch.save(trainer_state, tmp / "trainer_state.pt")
        for path in tmp.iterdir():
            fsync_path(path)
        # Swap the folder in: a crash between the two renames leaves the old one as .NAME.old
        if directory.exists():
            directory.rename(old)
        tmp.rename(directory)
        fsync_path(directory.parent)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_weights(directory: Path, model: nn.Module, device: torch.device | str = "cpu") -> None:
    load_model(model, str(Path(directory) / "model.safetensors"), device=str(device))


def load_meta(directory: Path) -> dict:
    return json.loads((Path(directory) / "meta.json").read_text())


def load_tokenizer(directory: Path) -> TextTokenizer:
    return TextTokenizer.load(Path(directory) / "tokenizer.json")


def load_trainer_state(directory: Path) -> dict:
    return torch.load(Path(directory) / "trainer_state.pt", weights_only=True)
