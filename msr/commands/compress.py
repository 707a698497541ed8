"""`msr compress run=RUN`: a smaller copy of a run's model, in a run folder of its own.

The recipe: load RUN's checkpoint and its data (the run's own, as evaluate does) and score the
test split; zero the smallest weights (compress.prune), train the rest for
compress.finetune_steps with the zeros held by their masks (the Trainer of msr train, history
and all), make the zeros permanent; quantize the Linear, LSTM and GRU layers to int8
(compress.quantize); save the result as checkpoints/best and last, load it back as evaluate
would and score it; time both models on the CPU, in turns. metrics.json holds both sides:
parameters, non-zero parameters, bytes on disk, CPU tokens/s, test accuracy.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import torch

from msr.compress.measure import stored_weights
from msr.eval.speed import cpu_speeds
from msr.compress.prune import make_permanent, plain_state, prune_model, zeros_of
from msr.compress.quantize import SCHEME, plan, quantize
from msr.config import RecurrentConfig, TrainConfig, TransformerConfig
from msr.data import content_fingerprint
from msr.eval.inference import load_checkpoint
from msr.eval.metrics import evaluate
from msr.eval.report import training_predictions
from msr.models import build_model_for
from msr.runs import RunDir, checkpoint_dir
from msr.train.checkpoint import save_checkpoint
from msr.train.recipe import encode_splits, run_logger, start, task_splits, train_model

log = logging.getLogger("msr")

EMPTY_SUMMARY = {"metrics": {}, "accuracy_by_steps": {}}


def run(dict_cfg, run: RunDir) -> dict:
    cfg, device = start(dict_cfg)
    source = checkpoint_dir(cfg.run, cfg.checkpoint)
    model, tokenizer, meta = load_checkpoint(source, "cpu")
    training = fine_tune_config(cfg, meta)
    splits = task_splits(training, "compress")
    data = encode_splits(splits, tokenizer, training, "cpu")
    batch = cfg.trainer.eval_batch_size
    before = side(source, evaluate(model, data["test"], batch))
    log.info("%s: test accuracy %.4f, %s bytes", source, before["test/accuracy"], f"{before['size_bytes']:,}")

    record = shrink(model, cfg.compress, data["test"], batch,
                    lambda: fine_tune(model, training, dict_cfg, run, tokenizer, data, device))
    saved = {k: v for k, v in meta.items() if k not in ("format", "metrics")}  # the source's scores are not these
    saved["compressed"] = {"source": str(source), **{k: v for k, v in record.items() if k != "quantized"}}
    if "quantized" in record:  # the loader rebuilds these layers as int8 (msr.compress.quantize.rebuild)
        saved["quantized"] = record["quantized"]
    for name in ("best", "last"):
        save_checkpoint(run.checkpoints / name, model, tokenizer, saved)

    model, _, _ = load_checkpoint(run.checkpoints / "best", "cpu")  # scored as evaluate will read it
    scores = evaluate(model, data["test"], batch)
    after = side(run.checkpoints / "best", scores)
    before["cpu_tokens_per_second"], after["cpu_tokens_per_second"] = cpu_speeds(
        [load_checkpoint(source, "cpu")[0], model], data["test"], batch)
    log.info("compressed: test accuracy %.4f (was %.4f), %s bytes (%.2fx), %s tokens/s on CPU (was %s)",
             after["test/accuracy"], before["test/accuracy"], f"{after['size_bytes']:,}",
             after["size_bytes"] / before["size_bytes"], f"{after['cpu_tokens_per_second']:,.0f}",
             f"{before['cpu_tokens_per_second']:,.0f}")
    if run.writes:
        training_predictions(run.path / "predictions.jsonl", model, tokenizer, splits["test"], scores, "cpu")
    return {
        "source_run": str(source),
        "metrics": {"test/accuracy": scores["accuracy"], "test/loss": scores["loss"],
                    "test/token_accuracy": scores["token_accuracy"], "source/test/accuracy": before["test/accuracy"]},
        "accuracy_by_steps": scores["by_steps"],
        "compress": {**record, "size_ratio": round(after["size_bytes"] / before["size_bytes"], 4)},
        "before": before,
        "after": after,
        "steps": cfg.compress.finetune_steps,
        "parameters": after["parameters"],
        "nonzero_parameters": after["nonzero_parameters"],
        "size_bytes": after["size_bytes"],
        "tokens_per_second": after["cpu_tokens_per_second"],
        "device": str(device),
        "cpu_threads": torch.get_num_threads(),  # the speeds' threads
        "seed": cfg.seed,
        "data_fingerprint": content_fingerprint(splits),  # evaluate checks a rebuilt split against it
    }


def side(checkpoint, scores: dict) -> dict:
    """One side of the comparison: what the checkpoint stores, and how its model scores."""
    return {**stored_weights(checkpoint / "model.safetensors"), "test/accuracy": scores["accuracy"],
            "test/loss": scores["loss"]}


def shrink(model, options, test, batch: int, fine_tune) -> dict:
    """Prune, fine-tune and quantize `model` (in place) as `options` ask; what was done."""
    record = {"prune": options.prune, "prune_scope": options.prune_scope, "finetune_steps": options.finetune_steps,
              "quantize": options.quantize.value}
    if options.prune:
        prune_model(model, options.prune, options.prune_scope)
        zeros, entries = zeros_of(model)
        record["pruned_test_accuracy"] = evaluate(model, test, batch)["accuracy"]  # before any fine-tune
        log.info("pruned %s of %s weight-matrix entries (%.1f%%, %s): test accuracy %.4f", f"{zeros:,}",
                 f"{entries:,}", 100 * zeros / entries, options.prune_scope, record["pruned_test_accuracy"])
        if options.finetune_steps:
            fine_tune()
        make_permanent(model)
        record["pruned_fraction"] = zeros_of(model)[0] / entries
    if options.quantize.value == "int8":
        layers, left = plan(model)
        if left:
            log.warning("layers %s stay fp32: torch.ao has no int8 nn.RNN (its output layer is int8)", ", ".join(left))
        quantize(model, layers)
        record["quantized"] = {"scheme": SCHEME, "layers": layers, "float_layers": left}
    return record


def fine_tune_config(cfg, meta: dict) -> TrainConfig:
    """The fine-tune as a training run of the loaded model: compress.finetune_steps long."""
    schema = TransformerConfig if meta["model"]["name"] == "transformer" else RecurrentConfig
    return TrainConfig(seed=cfg.seed, model=schema(**meta["model"]), optimizer=cfg.optimizer, scheduler=cfg.scheduler,
                       data=cfg.data, device=cfg.device, trainer=replace(cfg.trainer, max_steps=max(
                           cfg.compress.finetune_steps, 1)), paths=cfg.paths, logger=cfg.logger,
                       curriculum=cfg.curriculum)


def fine_tune(model, training: TrainConfig, dict_cfg, run: RunDir, tokenizer, data: dict, device) -> None:
    """Train the pruned model under its masks (in place; it ends on the CPU with its best weights):
    the masks keep the pruned entries zero, and the checkpoints hold the plain model they compute."""

    def plain():
        copy = build_model_for(training.model, tokenizer).to(device)
        copy.load_state_dict(plain_state(model))
        return copy

    model.to(device)
    with run_logger(run, training) as history:
        train_model(model, training, dict_cfg, run, history, tokenizer, {k: v.to(device) for k, v in data.items()},
                    device, "supervised", export=plain)
    model.cpu()
