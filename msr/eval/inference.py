"""Trained runs as models for scoring and decoding: one checkpoint, or several as an ensemble."""

from __future__ import annotations

from pathlib import Path

from msr.compress.quantize import rebuild
from msr.errors import UserError
from msr.runs import checkpoint_dir
from msr.train.checkpoint import load_meta, load_tokenizer, load_weights, read_weights


def load_checkpoint(directory: Path, device):
    """(model, tokenizer, meta) of one checkpoint, the model built from the config it saved."""
    from msr.config import RecurrentConfig, TransformerConfig
    from msr.models import build_model_for

    meta = load_meta(directory)
    saved = dict(meta.get("model", {}))
    schema = {"transformer": TransformerConfig, "rnn": RecurrentConfig, "lstm": RecurrentConfig,
              "gru": RecurrentConfig}.get(saved.get("name"))
    if schema is None:
        raise UserError(f"{directory}/meta.json names no model msr knows ({saved.get('name')!r})")
    tokenizer = load_tokenizer(directory)
    if tokenizer.vocab_size != meta["vocab_size"]:
        raise UserError(f"{directory}: tokenizer.json has {tokenizer.vocab_size} tokens but the weights were "
                        f"trained for {meta['vocab_size']}; the files come from different runs")
    try:
        model = build_model_for(schema(**saved), tokenizer).to(device)
        if "quantized" in meta:  # msr compress: int8 layers rebuilt from their stored weights and scales
            rebuild(model, read_weights(directory / "model.safetensors"), meta["quantized"]["layers"], device)
        else:
            load_weights(directory, model, device)
    except (TypeError, ValueError, RuntimeError) as err:
        raise UserError(f"{directory}: the weights do not fit the {saved['name']} model its meta.json "
                        f"describes ({str(err).splitlines()[0]})") from None
    model.eval()
    if meta.get("attention_mask", "causal") != "causal":  # a prefix LM (or a masked LM) reads as it trained
        model.set_attention(meta["attention_mask"], tokenizer.sep_id)
    return model, tokenizer, meta


def load_models(runs: list[str], checkpoint: str, device):
    """One run's model, or an Ensemble of several that share one vocabulary."""
    from msr.models.ensemble import Ensemble

    loaded = [load_checkpoint(checkpoint_dir(run, checkpoint), device) for run in runs]
    model, tokenizer, meta = loaded[0]
    for run, (_, other, _) in zip(runs[1:], loaded[1:]):
        if other.to_str() != tokenizer.to_str():
            raise UserError(f"run={run} has another vocabulary than {runs[0]}: an ensemble averages "
                            f"next-token probabilities, so its members must share one tokenizer")
    if len(loaded) > 1:
        model = Ensemble([m for m, _, _ in loaded]).eval()
    return model, tokenizer, meta
