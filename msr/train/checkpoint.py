"""Checkpoints: a folder with model.safetensors, tokenizer.json, meta.json and trainer_state.pt.

model.safetensors is always the plain model that evaluate and generate load. A model trained
through adapters (LoRA) saves it merged, and keeps the adapters as they train in
training_model.safetensors, which only resume reads.

A checkpoint is written whole into a temporary folder and then renamed into place, so
`checkpoints/last` is always a complete checkpoint (for the instant between two renames it is
`checkpoints/.last.old`, and the next save puts it back if a crash struck there). Nothing in it is unpickled on load:
weights come from safetensors, the trainer state through torch.load(weights_only=True).
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from msr.compress.quantize import int8_tensors, quantized_layers
from msr.data.tokenizer import TextTokenizer
from msr.errors import UserError
from msr.runs import fsync_path

FORMAT_VERSION = 1


TRAINING_WEIGHTS = "training_model.safetensors"


def save_checkpoint(directory: Path, model: nn.Module, tokenizer: TextTokenizer, meta: dict,
                    trainer_state: dict | None = None, keep: int = 1, training_model: nn.Module | None = None) -> None:
    """Write the checkpoint whole, then swap it in. With keep > 1 the one it replaces stays as
    `step-NNNNNNN` beside it, and the oldest of those go so that `keep` remain with this one."""
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
        save_weights(model, tmp / "model.safetensors")
        if training_model is not None:
            save_weights(training_model, tmp / TRAINING_WEIGHTS)
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
        if keep > 1 and old.exists():
            old.rename(directory.parent / f"step-{load_meta(old).get('step', 0):07d}")
            for stale in sorted(directory.parent.glob("step-*"))[: -(keep - 1)]:
                shutil.rmtree(stale, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def tied_groups(model: nn.Module) -> list[list[str]]:
    """State-dict names that are one tensor (tied embeddings): same address, shape and strides.
    Views into one buffer with other offsets (cuDNN packs an RNN's weights so) are not ties."""
    groups: dict[tuple, list[str]] = {}
    for name, tensor in model.state_dict().items():
        groups.setdefault((tensor.data_ptr(), tuple(tensor.shape), tensor.stride()), []).append(name)
    return list(groups.values())


def save_weights(model: nn.Module, path: Path) -> None:
    """Each tensor once, as its own contiguous CPU copy: safetensors refuses views of a shared
    buffer, which is how cuDNN keeps RNN weights on the GPU. An int8 model (msr compress) is
    stored as its int8 weights with their scales (msr.compress.quantize)."""
    if quantized_layers(model):
        save_file(int8_tensors(model), str(path), metadata={"format": "pt"})
        return
    state = model.state_dict()
    tensors = {group[0]: state[group[0]].detach().to("cpu", copy=True).contiguous() for group in tied_groups(model)}
    save_file(tensors, str(path), metadata={"format": "pt"})


def read_weights(path: Path, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path), device=str(device))
    except Exception as err:  # safetensors' own error type differs between versions
        raise UserError(f"{path} is damaged or truncated ({str(err).splitlines()[0][:120]})") from None


def load_weights(directory: Path, model: nn.Module, device: torch.device | str = "cpu",
                 file: str = "model.safetensors") -> None:
    fit_weights(read_weights(Path(directory) / file, device), model, directory)


def load_training_weights(directory: Path, model: nn.Module, device: torch.device | str = "cpu") -> None:
    """The weights as they were being trained: the adapters' own file where there is one."""
    adapters = (Path(directory) / TRAINING_WEIGHTS).is_file()
    load_weights(directory, model, device, TRAINING_WEIGHTS if adapters else "model.safetensors")


def fit_weights(tensors: dict[str, torch.Tensor], model: nn.Module, directory: Path) -> None:
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    unloaded = [g for g in tied_groups(model) if not set(g) - set(missing)]  # a tie needs one member
    if unexpected or unloaded:
        raise ValueError(f"checkpoint {directory} does not fit the model: "
                         f"missing {[g[0] for g in unloaded]}, unexpected {unexpected}")


def load_meta(directory: Path) -> dict:
    path = Path(directory) / "meta.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"{path} cannot be read ({err})") from None
    if meta.get("format") != FORMAT_VERSION:
        raise UserError(f"{path} is checkpoint format {meta.get('format')!r}; this msr reads format "
                        f"{FORMAT_VERSION}: use the msr version that wrote it")
    return meta


def load_tokenizer(directory: Path) -> TextTokenizer:
    return TextTokenizer.load(Path(directory) / "tokenizer.json")


def load_trainer_state(directory: Path) -> dict:
    """Tensors and plain containers only: a pickle that would build other objects (and could
    run code while doing so) is refused, not loaded."""
    path = Path(directory) / "trainer_state.pt"
    try:
        return torch.load(path, weights_only=True)
    except pickle.UnpicklingError as err:
        raise UserError(f"{path} holds objects other than tensors and plain values; refusing to unpickle it "
                        f"({str(err).splitlines()[0][:120]})") from None
    except (RuntimeError, EOFError, OSError) as err:
        raise UserError(f"{path} is damaged or truncated ({str(err).splitlines()[0][:120]})") from None
