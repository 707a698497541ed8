"""Starting from a pretrained run: grow its vocabulary, freeze parts, scale learning rates by
part, or train LoRA adapters instead of the weights.

Every model here has three parts: `embeddings` (tokens and positions), `body` (Transformer
blocks or recurrent layers, numbered from the bottom; the final LayerNorm counts as the top
layer) and `head` (the output projection). A symbol the pretrained vocabulary lacks gets new
rows in the embedding and head, set to the mean of the old ones, and those rows always train,
whatever else is frozen.
"""

from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from msr.data.tokenizer import TextTokenizer
from msr.errors import UserError
from msr.models import build_model_for
from msr.train.checkpoint import fit_weights, read_weights

log = logging.getLogger("msr")

VOCABULARY_ROWS = ("embed.weight", "head.weight", "head.bias")  # the tensors with one row per symbol


@dataclass
class Transfer:
    """A pretrained model made ready to fine-tune, and how to train and save it."""

    model: nn.Module
    lr_scale: dict[str, float]  # parameter name -> multiple of optimizer.lr
    new_rows: dict[str, int] = field(default_factory=dict)  # frozen parameters of which new rows train
    adapters: object = None  # the peft model wrapping `model`, when it trains LoRA adapters

    def export(self) -> nn.Module:
        """The model that evaluate and generate load: with LoRA, a copy with the adapters merged."""
        if self.adapters is None:
            return self.model
        return copy.deepcopy(self.adapters).merge_and_unload()

    def trainable(self) -> int:
        """Parameters that change in training; of a row-masked tensor only its new rows."""
        count = 0
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                count += self.new_rows[name] * p[0].numel() if name in self.new_rows else p.numel()
        return count


def check_architecture(saved: dict, wanted: dict, init: str) -> None:
    """The init run's model, unchanged but for dropout and a longer max_len (positions past the
    init run's are new rows, as new symbols are; sinusoidal ones are computed): other settings
    would not fit its weights, or (heads, shared layers) would load them silently into another
    computation. (`model=` itself is checked by the command line, before composing.)"""
    for key, value in saved.items():
        now = getattr(wanted.get(key), "value", wanted.get(key))  # an enum's value, as meta.json holds it
        if key == "max_len" and now < value:
            raise UserError(f"model.max_len={now}, but init={init} was trained with {value}; model.max_len may "
                            f"grow, not shrink: leave it out or raise it")
        if key not in ("dropout", "max_len") and now != value:
            raise UserError(f"model.{key}={now}, but init={init} was trained with {value}; a fine-tuned "
                            f"model keeps the init run's architecture (only model.dropout may change), though "
                            f"model.max_len may grow")


def grow_vocabulary(pretrained: TextTokenizer, texts) -> tuple[TextTokenizer, list[str]]:
    """The init run's vocabulary with the symbols of `texts` it lacks added at the end; those symbols."""
    tokenizer, new = pretrained.extend(texts)
    if new:
        shown = " ".join(new[:20]) + (" ..." if len(new) > 20 else "")
        log.info("vocabulary: %d symbols from init, %d new from the task's training split (%s): "
                 "embedding and head rows %d -> %d", pretrained.vocab_size, len(new), shown,
                 pretrained.vocab_size, tokenizer.vocab_size)
    return tokenizer, new


def new_positions(saved: dict, model_cfg) -> int:
    """Learned positions past the init run's model.max_len (`saved` is its model config)."""
    if getattr(model_cfg, "positions", None) != "learned":
        return 0
    new = model_cfg.max_len - saved["max_len"]
    if new:
        log.info("positions: %d from init, %d new (model.max_len %d -> %d), started at their mean; they train",
                 saved["max_len"], new, saved["max_len"], model_cfg.max_len)
    return new


def attention_after(init_meta: dict) -> str:
    """The attention mask of a model fine-tuned from the init run (its meta.json): a masked LM
    becomes a prefix LM, bidirectional over the input it learned to read both ways and causal
    over the target it must now write; any other keeps its own (causal for most)."""
    if init_meta.get("objective") == "masked":
        return "prefix"
    return init_meta.get("attention_mask", "causal")


def load_pretrained(directory: Path, model_cfg, tokenizer, device) -> nn.Module:
    """The model of `directory`'s checkpoint with room for `tokenizer`'s symbols (and, for learned
    positions, model.max_len positions): the old rows as trained, the new ones at the mean of the
    old (so a new symbol or position starts as an average one)."""
    tensors = read_weights(Path(directory) / "model.safetensors", device)
    model = build_model_for(model_cfg, tokenizer).to(device)
    rows = {name: tokenizer.vocab_size for name in VOCABULARY_ROWS}
    if getattr(model_cfg, "positions", None) == "learned":
        rows["positions"] = model_cfg.max_len
    for name, wanted in rows.items():
        old = tensors.get(name)
        if old is not None and old.shape[0] < wanted:
            extra = old.mean(dim=0, keepdim=True).expand(wanted - old.shape[0], *old.shape[1:])
            tensors[name] = torch.cat([old, extra])
    try:
        fit_weights(tensors, model, directory)
    except (ValueError, RuntimeError) as err:
        raise UserError(f"init={directory}: its weights do not fit model {model_cfg.name} as configured "
                        f"({str(err).splitlines()[0][:160]}); leave the model.* sizes as the init run had them") from None
    return model


def part_of(name: str) -> tuple[str, int | None]:
    """("embeddings" | "body" | "head", layer index or None) of a parameter name."""
    if name.startswith(("embed.", "positions")):
        return "embeddings", None
    if name.startswith("head."):
        return "head", None
    layer = re.match(r"blocks\.(\d+)\.", name) or re.search(r"_l(\d+)(_reverse)?$", name)
    return "body", int(layer.group(1)) if layer else None  # None: above every layer (ln_f)


def num_layers(model_cfg) -> int:
    return model_cfg.n_layers if model_cfg.name == "transformer" else model_cfg.num_layers


def frozen_by(spec: str, name: str) -> bool:
    part, layer = part_of(name)
    if spec == "embeddings":
        return part == "embeddings"
    if spec == "all_but_head":
        return part != "head"
    if spec.startswith("lower:"):  # N <= layers is checked with the config
        return part == "embeddings" or (part == "body" and layer is not None and layer < int(spec[6:]))
    return False


def lr_scales(model: nn.Module, cfg, layers: int) -> dict[str, float]:
    """Each parameter's multiple of optimizer.lr: its part's scale, and in the body
    layer_decay to the power of how many layers it lies below the top one."""
    scales = {}
    for name, _ in model.named_parameters():
        part, layer = part_of(name)
        scale = getattr(cfg, part)
        if part == "body" and layer is not None:
            scale *= cfg.layer_decay ** (layers - 1 - layer)
        scales[name] = scale
    return scales


def train_new_rows(model: nn.Module, grown: dict[str, int]) -> dict[str, int]:
    """Let the `grown[name]` last rows (new symbols, new positions) train in tensors that are
    frozen: their gradient is masked to those rows. Returns {name: rows} for each masked parameter."""
    masked = {}
    for name, p in model.named_parameters():
        new = grown.get(name.replace(".base_layer.", "."), 0)  # peft keeps a wrapped Linear's weight there
        if not new or p.requires_grad:
            continue
        mask = torch.zeros(p.shape[0], *[1] * (p.dim() - 1), device=p.device)
        mask[p.shape[0] - new:] = 1
        p.requires_grad_(True)
        p.register_hook(lambda grad, mask=mask: grad * mask)
        masked[name] = new
    return masked


def prepare(model: nn.Module, model_cfg, cfg, new_symbols: int, vocab_size: int, new_positions: int = 0) -> Transfer:
    """Freeze or wrap the pretrained model as `cfg` (finetune.*) asks; log what will train.
    `new_symbols` and `new_positions` rows were added by load_pretrained: they always train."""
    layers = num_layers(model_cfg)
    if getattr(model_cfg, "share_layers", False) and (cfg.freeze.startswith("lower:") or cfg.lr_scale.layer_decay != 1):
        raise UserError("model.share_layers: every layer is one block, so finetune.freeze=lower:N and "
                        "finetune.lr_scale.layer_decay cannot tell layers apart; use freeze=embeddings or lr_scale.body")
    adapters = None
    if cfg.lora.rank:
        tied = model.head.weight is model.embed.weight
        shared = [m for m in cfg.lora.target_modules if tied and m in ("head", "embed")]
        if shared:
            raise UserError(f"finetune.lora.target_modules names {shared[0]}, whose weights are also the "
                            f"{'embeddings' if shared[0] == 'head' else 'head'} (model.tie_embeddings): merging "
                            f"the adapter would change both; leave {shared[0]} out")
        adapters = add_lora(model, cfg.lora)
    else:
        for name, p in model.named_parameters():
            p.requires_grad_(not frozen_by(cfg.freeze, name))
        if getattr(model_cfg, "tie_embeddings", False) and cfg.freeze != "none":
            head_trains = cfg.freeze == "all_but_head"
            model.head.weight.requires_grad_(head_trains)  # one tensor: it cannot be both
            log.warning("model.tie_embeddings: the head is the embedding matrix, so finetune.freeze=%s %s both",
                        cfg.freeze, "trains" if head_trains else "freezes")
    scales = lr_scales(model, cfg.lr_scale, layers)
    if cfg.lr_scale.head != 1 and getattr(model.head, "weight", None) is getattr(model.embed, "weight", None):
        scaled = [name for name in scales if part_of(name)[0] == "head"]
        log.warning("finetune.lr_scale.head=%g %s: with model.tie_embeddings the head's weight is the embedding "
                    "matrix, which trains at finetune.lr_scale.embeddings=%g", cfg.lr_scale.head,
                    f"applies only to {', '.join(scaled)}" if scaled else "changes nothing", cfg.lr_scale.embeddings)
    grown = {**{name: new_symbols for name in VOCABULARY_ROWS}, "positions": new_positions}
    transfer = Transfer(model, scales, train_new_rows(model, grown), adapters)
    total = sum(p.numel() for p in transfer.export().parameters())
    log.info("trainable parameters: %s of %s (%.2f%%)%s", f"{transfer.trainable():,}", f"{total:,}",
             100 * transfer.trainable() / total, f"; LoRA rank {cfg.lora.rank} on {list(cfg.lora.target_modules)}"
             if adapters is not None else f"; frozen: {cfg.freeze}")
    return transfer


def add_lora(model: nn.Module, cfg):
    """Wrap the target Linear layers with LoRA adapters through peft; every base weight freezes."""
    from peft import LoraConfig, get_peft_model

    targets = list(cfg.target_modules)
    linear = sorted({re.sub(r"\.\d+\.", ".N.", n) for n, m in model.named_modules() if isinstance(m, nn.Linear)})
    # peft adapts every module whose name is a target or ends in "." + target, and is content when
    # any target matches: a misspelt one would leave its layers untrained without a word
    names = [n for n, _ in model.named_modules()]
    unmatched = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if unmatched:
        raise UserError(f"finetune.lora.target_modules={targets}: {', '.join(unmatched)} match no layer peft can "
                        f"adapt (a target names a module or the end of its name); this model's Linear layers: "
                        f"{', '.join(linear)}")
    config = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=targets)
    try:
        return get_peft_model(model, config)
    except ValueError as err:
        raise UserError(f"finetune.lora.target_modules={targets} match no layer peft can adapt "
                        f"({str(err).splitlines()[0][:100]}); this model's Linear layers: {', '.join(linear)}") from None
