"""`msr train` end to end on tiny configs: run folders, metrics, sweeps, reproducibility."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY, TINY_MODEL, read_metrics, run_msr
from msr.config import RecurrentConfig
from msr.device import cpu_runs_bf16_lstm
from msr.models import build_model

METRIC_KEYS = {"command", "status", "metrics", "accuracy_by_steps", "steps", "tokens_per_second",
               "wall_seconds", "parameters", "versions"}


@pytest.mark.parametrize("model", sorted(TINY_MODEL))
def test_every_model_trains_and_leaves_a_complete_run_folder(model, in_tmp):
    run = in_tmp / "run"
    assert run_msr("train", *TINY, *TINY_MODEL[model], f"hydra.run.dir={run}") == 0
    for name in (".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml", "msr.log",
                 "history.jsonl", "metrics.json"):
        assert (run / name).is_file(), name
    for checkpoint in ("last", "best"):
        for name in ("model.safetensors", "tokenizer.json", "meta.json", "trainer_state.pt"):
            assert (run / "checkpoints" / checkpoint / name).is_file(), f"{checkpoint}/{name}"
    metrics = read_metrics(run)
    assert METRIC_KEYS <= metrics.keys()
    assert metrics["command"] == "train" and metrics["status"] == "completed"
    # Hydra's own overrides (hydra.run.dir) stay out: a rerun must not write into this folder
    assert metrics["command_line"] == "msr train " + " ".join([*TINY, *TINY_MODEL[model]])
    assert metrics["steps"] == 20 and metrics["parameters"] > 0 and metrics["tokens_per_second"] > 0
    assert {"val/loss", "val/accuracy", "test/loss", "test/accuracy"} <= metrics["metrics"].keys()
    assert set(metrics["accuracy_by_steps"]) == {"1", "2", "3", "4"}
    assert set(metrics["versions"]) >= {"python", "torch", "msr"}
    meta = json.loads((run / "checkpoints/last/meta.json").read_text())
    assert meta["model"]["name"] == model and meta["step"] == 20
    weights = load_file(run / "checkpoints/last/model.safetensors")
    assert sum(t.numel() for t in weights.values()) == metrics["parameters"]
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history if "train/loss" in h] == [5, 10, 15, 20]
    assert [h["step"] for h in history if "val/loss" in h] == [10, 20]
    log = (run / "msr.log").read_text()
    assert "test accuracy" in log and "step 20/20  loss" in log
    # no temporary files are left behind by the atomic writes
    assert not [p for p in run.rglob("*") if ".tmp" in p.name or ".old" in p.name]


# words only that task's inputs or targets have (arith's are digits and + - * =)
TASK_WORDS = {"chain": {";", "?", "a", "b"}, "listops": {"]", "[MAX", "[MIN"},
              "logic": {"Question", ":", "True", "False", "Unknown"}, "kinship": {"Who", "mother", "?"}}
FINGERPRINTS: dict[str, str] = {}  # each task's data, across the parametrized runs


@pytest.mark.parametrize("task", ["chain", "listops", "logic", "kinship"])
def test_every_built_in_task_trains(task, in_tmp):
    assert run_msr("train", f"data={task}", *TINY, *TINY_MODEL["gru"], "hydra.run.dir=run") == 0
    metrics = read_metrics(in_tmp / "run")
    assert metrics["status"] == "completed" and set(metrics["accuracy_by_steps"]) == {"1", "2", "3", "4"}
    assert f"data={task}" in metrics["command_line"]
    # the model learnt that task's data: its vocabulary and its data's fingerprint are the task's
    vocabulary = set(json.loads((in_tmp / "run/checkpoints/best/tokenizer.json").read_text())["model"]["vocab"])
    assert TASK_WORDS[task] <= vocabulary
    assert all(not words <= vocabulary for other, words in TASK_WORDS.items() if other != task)
    assert json.loads((in_tmp / "run/checkpoints/best/meta.json").read_text())["task"] == task
    FINGERPRINTS[task] = metrics["data_fingerprint"]
    assert len(set(FINGERPRINTS.values())) == len(FINGERPRINTS)


def test_run_folders_default_to_outputs_command_date_time(in_tmp):
    assert run_msr("train", *TINY, *TINY_MODEL["gru"], "trainer.max_steps=3") == 0
    runs = list((in_tmp / "outputs" / "train").glob("*/*"))
    assert len(runs) == 1 and (runs[0] / "metrics.json").is_file()
    date, time = runs[0].parent.name, runs[0].name
    assert len(date) == 10 and date[4] == "-" and len(time) == 8 and time[2] == "-"


@pytest.mark.slow
def test_sweep_writes_one_folder_per_job(in_tmp):
    code = run_msr("train", "-m", *TINY, "trainer.max_steps=4", "model=lstm,gru", "optimizer.lr=1e-3,3e-3",
                   "model.hidden_size=16", "model.embedding_size=16")
    assert code == 0
    jobs = sorted((in_tmp / "outputs" / "multirun" / "train").glob("*/*/*/metrics.json"))
    assert len(jobs) == 4
    seen = set()
    for path in jobs:
        cfg = (path.parent / ".hydra" / "config.yaml").read_text()
        metrics = json.loads(path.read_text())
        assert metrics["status"] == "completed"
        name = "lstm" if "name: lstm" in cfg else "gru"
        lr = "0.001" if "lr: 0.001" in cfg else "0.003"
        seen.add((name, lr))
    assert seen == {("lstm", "0.001"), ("lstm", "0.003"), ("gru", "0.001"), ("gru", "0.003")}


def test_same_seed_gives_the_same_metrics(in_tmp):
    args = [*TINY, *TINY_MODEL["lstm"]]
    assert run_msr("train", *args, "hydra.run.dir=a") == 0
    assert run_msr("train", *args, "hydra.run.dir=b") == 0
    assert run_msr("train", *args, "seed=1", "hydra.run.dir=c") == 0
    a, b, c = (read_metrics(in_tmp / d) for d in "abc")
    assert a["metrics"] == b["metrics"] and a["accuracy_by_steps"] == b["accuracy_by_steps"]
    assert a["metrics"] != c["metrics"]


def test_loss_falls_on_a_tiny_task(in_tmp):
    args = [*TINY, *TINY_MODEL["lstm"], "data.train.max_steps=1", "data.val.max_steps=1",
            "data.test.max_steps=1", "trainer.max_steps=150", "trainer.eval_every=150",
            "trainer.log_every=10", "data.train.size=100", "data.val.size=20", "data.test.size=20"]
    assert run_msr("train", *args, "hydra.run.dir=run") == 0
    history = [json.loads(line) for line in (in_tmp / "run/history.jsonl").read_text().splitlines()]
    losses = [h["train/loss"] for h in history if "train/loss" in h]
    assert losses[-1] < 0.5 * losses[0]


def history(run) -> list[dict]:
    return [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]


def trainer_state(run) -> dict:
    return torch.load(run / "checkpoints/last/trainer_state.pt", weights_only=True)


def weights(run, checkpoint: str = "last") -> dict:
    return load_file(run / "checkpoints" / checkpoint / "model.safetensors")


def saved_config(run) -> dict:
    return json.loads((run / "checkpoints/last/meta.json").read_text())["config"]


def check_the_schedule(run, decay) -> None:
    """history.jsonl's lr at step s is the rate optimizer step s-1 (0-based) used: warmup over
    TINY's 2 steps, then `decay(steps after warmup)` times optimizer.lr."""
    lr = saved_config(run)["optimizer"]["lr"]
    logged = {h["step"]: h["lr"] for h in history(run) if "lr" in h}
    assert sorted(logged) == list(range(1, 11))
    expected = {s: lr * ((s / 2) if s <= 2 else decay(s - 1 - 2)) for s in logged}
    assert logged == pytest.approx(expected, rel=1e-9)


def check_the_optimizer(run, kind, group: dict, state_keys: set) -> None:
    """The saved optimizer state is `kind`'s: its hyperparameters in every group, its own
    buffers for every parameter, after the run's 10 steps."""
    saved = trainer_state(run)["optimizer"]
    defaults = kind([torch.zeros(1, requires_grad=True)]).defaults
    assert len(saved["state"]) == len(weights(run))  # every tensor trained
    for saved_group in saved["param_groups"]:
        assert set(defaults) <= set(saved_group) and group.items() <= saved_group.items()
    for buffers in saved["state"].values():
        assert set(buffers) == state_keys
        assert all(float(t.abs().sum()) > 0 for t in buffers.values())  # filled by training, not as built
        if "step" in buffers:
            assert float(buffers["step"]) == 10


def check_the_loop_options(run) -> None:
    tensors = weights(run)
    assert "rnn.weight_ih_l1" in tensors and "rnn.weight_ih_l2" not in tensors  # model.num_layers=2
    assert tensors["embed.weight"].shape[1] == 32  # model.embedding_size=32
    assert "head.weight" not in tensors  # tied: saved once, as the embedding
    model_cfg = json.loads((run / "checkpoints/last/meta.json").read_text())["model"]
    torch.manual_seed(0)
    model = build_model(RecurrentConfig(**model_cfg), tensors["embed.weight"].shape[0])
    assert model.head.weight is model.embed.weight
    tokens = torch.randint(4, 10, (4, 6))
    model.train()
    assert not torch.equal(model(tokens)[0], model(tokens)[0])  # model.dropout=0.1 drops in training
    model.eval()
    assert torch.equal(model(tokens)[0], model(tokens)[0])


OPTIONS = [
    pytest.param(["optimizer=sgd", "optimizer.nesterov=true", "scheduler=step", "scheduler.step_size=5",
                  "scheduler.gamma=0.5"],
                 lambda run: (check_the_optimizer(run, torch.optim.SGD, {"nesterov": True, "momentum": 0.9},
                                                  {"momentum_buffer"}),
                              check_the_schedule(run, lambda done: 0.5 ** (done // 5))), id="sgd-step"),
    pytest.param(["optimizer=adam", "scheduler=linear"],
                 lambda run: (check_the_optimizer(run, torch.optim.Adam, {"weight_decay": 0.0},
                                                  {"step", "exp_avg", "exp_avg_sq"}),
                              check_the_schedule(run, lambda done: 1 - done / 7)),  # min_lr_ratio 0 at the last step
                 id="adam-linear"),
    pytest.param(["optimizer=adadelta", "scheduler=exponential", "scheduler.gamma=0.8"],
                 lambda run: (check_the_optimizer(run, torch.optim.Adadelta, {"rho": 0.9},
                                                  {"step", "square_avg", "acc_delta"}),
                              check_the_schedule(run, lambda done: 0.8**done)), id="adadelta-exponential"),
    pytest.param(["optimizer=rmsprop", "optimizer.momentum=0.5", "scheduler=constant"],
                 lambda run: (check_the_optimizer(run, torch.optim.RMSprop, {"momentum": 0.5, "centered": False},
                                                  {"step", "square_avg", "momentum_buffer"}),
                              check_the_schedule(run, lambda done: 1.0)), id="rmsprop-constant"),
    pytest.param(["optimizer=adagrad", "optimizer.lr_decay=0.01", "scheduler=cosine"],
                 lambda run: check_the_optimizer(run, torch.optim.Adagrad, {"lr_decay": 0.01, "eps": 1e-10},
                                                 {"step", "sum"}), id="adagrad"),
    pytest.param(["trainer.grad_accum_steps=2", "trainer.l1=1e-5", "trainer.l2=1e-4", "model.dropout=0.1",
                  "model.num_layers=2", "model.tie_embeddings=true", "model.embedding_size=32"],
                 check_the_loop_options, id="loop-options"),
]


@pytest.mark.parametrize("extra, check", OPTIONS)
def test_optimizers_schedules_and_loop_options_run(extra, check, in_tmp):
    args = [*TINY, *TINY_MODEL["lstm"], "trainer.max_steps=10", "trainer.log_every=1", *extra]
    assert run_msr("train", *args, "hydra.run.dir=run") == 0
    assert read_metrics(in_tmp / "run")["status"] == "completed"
    if check:
        check(in_tmp / "run")
    if "trainer.l2=1e-4" in extra:  # the penalties reach the gradient: without them (same seed) other weights
        assert run_msr("train", *args, "trainer.l1=0", "trainer.l2=0", "hydra.run.dir=plain") == 0
        penalized, plain = weights(in_tmp / "run"), weights(in_tmp / "plain")
        assert penalized.keys() == plain.keys() and not all(torch.equal(penalized[n], plain[n]) for n in plain)


SMALL_LSTM = [*TINY, *TINY_MODEL["lstm"], "trainer.max_steps=4", "trainer.eval_every=4", "trainer.log_every=1"]


def test_grad_accum_steps_make_one_update_of_the_micro_batches(in_tmp):
    """Two micro-batches of 8 are one batch of 16: batch k of 8 is half of batch k // 2 of 16, and
    the loss is the mean over all their target tokens, so the weights come out the same."""
    assert run_msr("train", *SMALL_LSTM, "trainer.batch_size=8", "trainer.grad_accum_steps=2", "hydra.run.dir=a") == 0
    assert run_msr("train", *SMALL_LSTM, "trainer.batch_size=16", "hydra.run.dir=b") == 0
    accumulated, whole = weights(in_tmp / "a"), weights(in_tmp / "b")
    assert all(torch.allclose(accumulated[n], whole[n], atol=1e-6) for n in whole)
    assert trainer_state(in_tmp / "a")["tokens"] == trainer_state(in_tmp / "b")["tokens"]


def test_grad_clip_bounds_each_update(in_tmp):
    """Plain SGD at a constant rate moves the weights by lr times the clipped gradient: with a
    tiny trainer.grad_clip every step's move has norm lr * grad_clip exactly."""
    lr, clip = 0.1, 1e-3
    assert run_msr("train", *SMALL_LSTM, "trainer.max_steps=3", "trainer.checkpoint_every=1", "trainer.keep_last=3",
                   "optimizer=sgd", f"optimizer.lr={lr}", "optimizer.momentum=0", "scheduler=constant",
                   "scheduler.warmup_steps=0", f"trainer.grad_clip={clip}", "hydra.run.dir=run") == 0
    steps = [weights(in_tmp / "run", name) for name in ("step-0000001", "step-0000002", "last")]
    for before, after in zip(steps, steps[1:]):
        moved = torch.cat([(after[n] - before[n]).flatten() for n in after]).norm()
        assert float(moved) == pytest.approx(lr * clip, rel=1e-3)


def test_bf16_autocast_changes_the_numbers(in_tmp):
    """trainer.precision=bf16 computes under autocast: the same run in fp32 logs other, close
    losses. An RNN, as CPU autocast runs nn.RNN in bf16 on every CPU (nn.LSTM only on some)."""
    small_rnn = [*TINY, *TINY_MODEL["rnn"], "trainer.max_steps=4", "trainer.eval_every=4", "trainer.log_every=1"]
    assert run_msr("train", *small_rnn, "trainer.precision=bf16", "hydra.run.dir=bf16") == 0
    assert run_msr("train", *small_rnn, "hydra.run.dir=fp32") == 0
    bf16, fp32 = ([h["train/loss"] for h in history(in_tmp / d) if "train/loss" in h] for d in ("bf16", "fp32"))
    assert len(bf16) == len(fp32) == 4
    assert bf16 != fp32 and bf16 == pytest.approx(fp32, abs=0.05)


def test_a_bf16_lstm_trains_where_the_cpu_has_the_kernel_and_is_one_line_elsewhere(in_tmp, capfd):
    """oneDNN's bf16 LSTM exists only on some CPUs (none on AVX2-only x86): where it is missing the
    run stops before its first step with one line naming the fix, not a traceback from inside torch."""
    code = run_msr("train", *SMALL_LSTM, "trainer.precision=bf16", "hydra.run.dir=run")
    err = capfd.readouterr().err
    if cpu_runs_bf16_lstm():
        assert code == 0 and read_metrics(in_tmp / "run")["status"] == "completed"
    else:
        assert code == 2 and "Traceback" not in err
        assert "msr: error: trainer.precision=bf16: this CPU's oneDNN has no bf16 LSTM" in err
        assert "use trainer.precision=fp32" in err
        assert not (in_tmp / "run/checkpoints").exists()


def test_early_stopping_stops_and_keeps_the_best(in_tmp):
    args = [*TINY, *TINY_MODEL["gru"], "trainer.max_steps=200", "trainer.eval_every=2",
            "trainer.early_stopping.patience=2", "trainer.early_stopping.monitor=val/loss",
            "optimizer.lr=1e-9", "scheduler=constant", "scheduler.warmup_steps=0"]
    assert run_msr("train", *args, "hydra.run.dir=run") == 0
    metrics = read_metrics(in_tmp / "run")
    assert metrics["stopped_early"] is True and metrics["steps"] < 200
    best = json.loads((in_tmp / "run/checkpoints/best/meta.json").read_text())
    assert best["step"] == metrics["best_step"]


def test_fp16_on_cpu_is_refused_before_any_work(in_tmp, capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert run_msr("train", *TINY, "device=cpu", "trainer.precision=fp16", "hydra.run.dir=run") == 2
    assert "trainer.precision=fp16 needs a CUDA device" in capsys.readouterr().err
    assert not (in_tmp / "run").exists()


def test_a_diverging_run_is_recorded_as_failed(in_tmp, capsys):
    args = [*TINY, *TINY_MODEL["rnn"], "optimizer=sgd", "optimizer.lr=1e38", "trainer.grad_clip=0",
            "scheduler=constant", "scheduler.warmup_steps=0", "trainer.log_every=1"]
    assert run_msr("train", *args, "hydra.run.dir=run") == 1
    err = capsys.readouterr().err
    assert "msr: error: the training loss is" in err and "Traceback" not in err
    metrics = read_metrics(in_tmp / "run")
    assert metrics["status"] == "failed" and metrics["reason"].startswith("the training loss is")
    assert METRIC_KEYS <= metrics.keys()


def test_a_folder_that_holds_a_run_is_not_reused(in_tmp, capsys):
    assert run_msr("train", *TINY, *TINY_MODEL["gru"], "trainer.max_steps=3", "hydra.run.dir=run") == 0
    before = (in_tmp / "run/.hydra/config.yaml").read_text()
    assert run_msr("train", *TINY, *TINY_MODEL["gru"], "trainer.max_steps=4", "hydra.run.dir=run") == 2
    assert "hydra.run.dir=run already holds a run" in capsys.readouterr().err
    assert (in_tmp / "run/.hydra/config.yaml").read_text() == before
    assert read_metrics(in_tmp / "run")["steps"] == 3


def test_sigterm_marks_the_run_interrupted(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    run = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "msr.cli", "train", *TINY, *TINY_MODEL["lstm"], "trainer.max_steps=100000",
         f"hydra.run.dir={run}"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (run / "history.jsonl").exists() and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert "msr: stopped by SIGTERM; the run folder is" in err and "Traceback" not in err
    metrics = read_metrics(run)
    assert metrics["status"] == "interrupted" and metrics["reason"] == "stopped by SIGTERM"


def test_the_bar_replaces_progress_lines_on_the_console_only():
    import logging

    from msr.train.progress import HideWhileBarShows, Progress

    progress_line = logging.LogRecord("msr.progress", logging.INFO, __file__, 1, "step 1/2", None, None)
    other_line = logging.LogRecord("msr", logging.INFO, __file__, 1, "val loss", None, None)
    console_filter = HideWhileBarShows()
    assert console_filter.filter(progress_line) and console_filter.filter(other_line)
    Progress.bar_shown = True
    try:
        assert not console_filter.filter(progress_line) and console_filter.filter(other_line)
    finally:
        Progress.bar_shown = False


def test_eval_iters_estimates_on_a_sample_and_scores_the_best_on_the_whole_split(in_tmp):
    """trainer.eval_iters=1 with eval_batch_size=8: each evaluation reads 8 of the 40 validation rows
    (a fresh sample each time), and metrics.json holds the best checkpoint scored on all 40."""
    assert run_msr("train", *TINY, "trainer.eval_iters=1", "trainer.eval_batch_size=8", "hydra.run.dir=run") == 0
    log = (in_tmp / "run/msr.log").read_text()
    assert log.count("(estimated on 8 rows)") == 2
    evaluations = [r for r in map(json.loads, (in_tmp / "run/history.jsonl").read_text().splitlines())
                   if "val/accuracy" in r]
    assert all(r["val/accuracy"] * 8 == round(r["val/accuracy"] * 8) for r in evaluations)  # eighths
    assert run_msr("evaluate", "run=run", "split=val", "hydra.run.dir=scored") == 0
    whole = read_metrics(in_tmp / "scored")["metrics"]
    metrics = read_metrics(in_tmp / "run")["metrics"]
    assert metrics["val/accuracy"] == whole["val/accuracy"] and metrics["val/loss"] == pytest.approx(whole["val/loss"])


def test_history_carries_elapsed_seconds_that_grow(in_tmp):
    assert run_msr("train", *TINY, "hydra.run.dir=run") == 0
    elapsed = [r["elapsed_seconds"] for r in map(json.loads, (in_tmp / "run/history.jsonl").read_text().splitlines())
               if "elapsed_seconds" in r]
    assert len(elapsed) == 6 and elapsed == sorted(elapsed) and 0 < elapsed[0]
    assert elapsed[-1] <= read_metrics(in_tmp / "run")["wall_seconds"]
