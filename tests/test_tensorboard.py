"""What a training run records beside metrics.json: TensorBoard event files that hold exactly
history.jsonl's scalars (and the run's hyperparameters), curves.png, and the test split's
predictions.jsonl."""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY, TINY_MODEL, read_metrics, run_msr

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from msr.data.batching import IGNORE
from msr.train.tensorboard import hparam_values

ARGS = [*TINY, *TINY_MODEL["gru"]]


def history(run) -> list[dict]:
    return [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]


def history_scalars(run) -> dict[str, list[tuple[int, float]]]:
    scalars: dict[str, list[tuple[int, float]]] = {}
    for record in history(run):
        for tag, value in record.items():
            if tag != "step":
                scalars.setdefault(tag, []).append((record["step"], value))
    return scalars


def events(run) -> EventAccumulator:
    accumulator = EventAccumulator(str(run), size_guidance={"scalars": 0})  # 0: keep every point
    accumulator.Reload()
    return accumulator


def event_scalars(accumulator: EventAccumulator) -> dict[str, list[tuple[int, float]]]:
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def assert_same_scalars(run) -> None:
    """The event files hold history.jsonl's tags, steps and values (to float32), nothing else."""
    expected, found = history_scalars(run), event_scalars(events(run))
    assert sorted(found) == sorted(expected)
    for tag, points in expected.items():
        assert [s for s, _ in found[tag]] == [s for s, _ in points], tag
        np.testing.assert_array_equal(np.float32([v for _, v in found[tag]]), np.float32([v for _, v in points]))


def test_event_files_hold_the_history_and_the_hparams_of_the_run(in_tmp):
    run = in_tmp / "run"
    assert run_msr("train", *ARGS, "optimizer.lr=0.004", f"hydra.run.dir={run}") == 0
    assert len(list(run.glob("events.out.tfevents.*"))) == 1  # in the run folder itself: one run in TensorBoard
    assert_same_scalars(run)
    tags = history_scalars(run)
    assert [s for s, _ in tags["grad_norm"]] == [5, 10, 15, 20] and all(v > 0 for _, v in tags["grad_norm"])
    assert {"lr", "tokens_per_second", "val/loss", "val/accuracy", "test/accuracy_by_steps/3"} <= tags.keys()
    metrics = read_metrics(run)
    assert tags["final/test/accuracy"] == [(20, metrics["metrics"]["test/accuracy"])]
    assert tags["test/accuracy_by_steps/3"] == [(20, metrics["accuracy_by_steps"]["3"])]

    # the hparams summaries are in the run's own event file, not a sub-run beside it
    content = events(run).PluginTagToContent("hparams")
    assert set(content) == {"_hparams_/experiment", "_hparams_/session_start_info", "_hparams_/session_end_info"}
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = start.session_start_info.hparams
    assert hparams["optimizer.lr"].number_value == pytest.approx(0.004)
    assert hparams["model.name"].string_value == "gru"
    assert hparams["model.hidden_size"].number_value == 32
    assert hparams["trainer.precision"].string_value == "auto"  # an enum, as its value
    assert "resume" not in hparams
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert {m.name.tag for m in experiment.metric_infos} == {f"final/{k}" for k in metrics["metrics"]}


def test_hparam_values_are_flat_and_of_the_types_hparams_takes():
    config = {"model": {"name": "gru", "sizes": [1, 2]}, "lr": 0.1, "on": True, "init": None, "resume": "",
              "extra": {}}
    assert hparam_values(config) == {"model.name": "gru", "model.sizes": "[1, 2]", "lr": 0.1, "on": True,
                                     "init": "null", "resume": '""', "extra": "{}"}


def test_logger_tensorboard_false_writes_no_event_file_but_the_rest(in_tmp):
    run = in_tmp / "run"
    assert run_msr("train", *ARGS, "logger.tensorboard=false", "trainer.grad_clip=0", f"hydra.run.dir={run}") == 0
    assert not list(run.glob("events.out.tfevents.*"))
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # without clipping the norm is measured on the logged steps alone, and still logged there
    assert [s for s, _ in history_scalars(run)["grad_norm"]] == [5, 10, 15, 20]


@pytest.mark.parametrize("clip", [0.0, 0.01])
def test_the_gradient_norm_is_the_one_before_clipping(clip):
    from test_loop_state import make_trainer, split, tiny_model

    trainer, data = make_trainer(tiny_model(), grad_clip=clip), split(8)
    inputs, labels = batch = data.batch(torch.arange(8))
    reference = copy.deepcopy(trainer.model)  # the same loss by hand, on a copy
    logits, _ = reference(inputs)
    F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE).backward()
    expected = torch.cat([p.grad.flatten() for p in reference.parameters()]).norm()
    trainer.measure_grad_norm = True
    trainer.step([batch])
    assert float(trainer.grad_norm) == pytest.approx(float(expected), rel=1e-5) and float(expected) > 0.01


def test_curves_and_predictions_of_a_training_run(in_tmp):
    run = in_tmp / "run"
    # enough training that some test answers are right and some wrong
    assert run_msr("train", *ARGS, "trainer.max_steps=120", "trainer.eval_every=60", "optimizer.lr=0.01",
                   "data.train.max_steps=1", "data.val.max_steps=1", "data.test.max_steps=1",
                   f"hydra.run.dir={run}") == 0
    png = run / "curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert not list(run.glob(".curves.*"))  # the temporary file was renamed
    lines = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    metrics = read_metrics(run)
    assert len(lines) == 40
    correct = sum(line["correct"] for line in lines)
    assert 0 < correct < 40
    assert correct == round(metrics["metrics"]["test/accuracy"] * 40)
    assert set(lines[0]) == {"input", "target", "prediction", "correct", "steps", "logprob", "target_logprob"}
    for line in lines:  # a right answer is the target; a wrong one is what greedy decoding wrote
        assert (line["prediction"].split() == line["target"].split()) == line["correct"]
        if line["correct"]:
            assert line["logprob"] == line["target_logprob"]


def test_a_resumed_run_leaves_no_step_twice_in_the_event_data(in_tmp):
    run = in_tmp / "run"
    args = [*ARGS, "trainer.eval_every=5", "trainer.log_every=3", "trainer.keep_last=2"]
    assert run_msr("train", *args, "trainer.stop_at=12", f"hydra.run.dir={run}") == 0
    assert read_metrics(run)["status"] == "interrupted"
    assert [s for s, _ in history_scalars(run)["train/loss"]] == [3, 6, 9, 12]
    # as if killed while checkpoints/last was replaced: the resume goes on from step-0000010, and
    # the event data logged after it (train/loss at 12) is done again
    shutil.rmtree(run / "checkpoints/last")
    [first] = run.glob("events.out.tfevents.*")
    assert run_msr("train", "resume=run", "trainer.stop_at=0") == 0
    assert json.loads((run / "resumes.jsonl").read_text())["step"] == 10
    assert len(list(run.glob("events.out.tfevents.*"))) == 2
    # the first segment's file still holds step 12: the second file's purge is what drops it
    assert [s for s, _ in event_scalars(events(first))["train/loss"]] == [3, 6, 9, 12]
    assert_same_scalars(run)
    assert [s for s, _ in history_scalars(run)["train/loss"]] == [3, 6, 9, 12, 15, 18, 20]
    assert [s for s, _ in history_scalars(run)["val/loss"]] == [5, 10, 15, 20]


def test_pretraining_logs_the_same_way_without_predictions(in_tmp):
    from test_pretrain import TINY_LM, corpus

    run = in_tmp / "run"
    assert run_msr("pretrain", *corpus(in_tmp), *TINY_LM, "hydra.run.dir=run") == 0
    assert_same_scalars(run)
    tags = history_scalars(run)
    assert [s for s, _ in tags["val/token_accuracy"]] == [20, 40, 60]
    metrics = read_metrics(run)["metrics"]
    assert tags["final/val/perplexity"] == [(60, metrics["val/perplexity"])]
    assert (run / "curves.png").is_file() and not (run / "predictions.jsonl").exists()  # no answers to predict
