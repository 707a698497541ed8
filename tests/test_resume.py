"""Resume, reproduce and faults: an interrupted run resumes to the same bits, a run folder is
enough to rerun it, and bad checkpoints, signals, NaNs and full disks lose nothing."""

from __future__ import annotations

import errno
import json
import os
import pickle
import signal
from contextlib import contextmanager

import pytest
from conftest import TINY, TINY_MODEL, msr_process, read_metrics, run_msr

from msr.runs import latest_checkpoint
from msr.train.loop import Trainer

SETTINGS = [*TINY, "trainer.max_steps=30", "trainer.eval_every=10", "trainer.log_every=5"]
DROPOUT = {"rnn": ["model.num_layers=2", "model.dropout=0.1"], "lstm": ["model.num_layers=2", "model.dropout=0.1"],
           "gru": ["model.num_layers=2", "model.dropout=0.1"], "transformer": ["model.dropout=0.1"]}


@contextmanager
def interrupted_at(at_step: int, sig=signal.SIGINT):
    """Send this process `sig` during optimizer step `at_step`, as Ctrl-C or a scheduler would."""
    original, count = Trainer.step, [0]

    def step(self, batches, *args):
        count[0] += 1
        if count[0] == at_step:
            os.kill(os.getpid(), sig)
        return original(self, batches, *args)

    Trainer.step = step
    try:
        yield
    finally:
        Trainer.step = original


def history(run) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in ("tokens_per_second", "elapsed_seconds")}
            for line in (run / "history.jsonl").read_text().splitlines()]


def results(run) -> dict:
    m = read_metrics(run)
    return {k: m[k] for k in ("metrics", "accuracy_by_steps", "steps", "best_step", "data_fingerprint")}


@pytest.mark.parametrize("model", ["rnn", "lstm", "gru", "transformer"])
def test_an_interrupted_run_resumes_to_the_same_bits(model, in_tmp, capsys):
    args = [*SETTINGS, *TINY_MODEL[model], *DROPOUT[model]]
    assert run_msr("train", *args, "hydra.run.dir=whole") == 0
    with interrupted_at(13):
        assert run_msr("train", *args, "hydra.run.dir=cut") == 130
    assert f"resume with: msr train resume={in_tmp / 'cut'}" in capsys.readouterr().err
    assert read_metrics(in_tmp / "cut")["status"] == "interrupted"
    assert json.loads((in_tmp / "cut/checkpoints/last/meta.json").read_text())["step"] == 13
    assert run_msr("train", "resume=cut") == 0
    for name in ("last", "best"):
        assert (in_tmp / f"cut/checkpoints/{name}/model.safetensors").read_bytes() == \
            (in_tmp / f"whole/checkpoints/{name}/model.safetensors").read_bytes()
    assert results(in_tmp / "cut") == results(in_tmp / "whole")
    assert history(in_tmp / "cut") == history(in_tmp / "whole")


def test_sigterm_also_stops_after_the_step_with_a_checkpoint(in_tmp):
    with interrupted_at(7, signal.SIGTERM):
        assert run_msr("train", *SETTINGS, *TINY_MODEL["gru"], "hydra.run.dir=run") == 143
    metrics = read_metrics(in_tmp / "run")
    assert metrics["status"] == "interrupted" and "SIGTERM" in metrics["reason"]
    assert json.loads((in_tmp / "run/checkpoints/last/meta.json").read_text())["step"] == 7


def test_resume_auto_finds_the_newest_unfinished_run_with_the_same_overrides(in_tmp, capsys):
    args = [*SETTINGS, *TINY_MODEL["lstm"]]
    # a folder of its own, where resume=auto looks: runs started in the same second cannot share it
    with interrupted_at(12):
        assert run_msr("train", *args, "hydra.run.dir=outputs/train/2026-01-01/00-00-00") == 130
    [folder] = list((in_tmp / "outputs/train").glob("*/*"))
    capsys.readouterr()
    assert run_msr("train", *args, "resume=auto") == 0
    assert f"resuming outputs/train/{folder.parent.name}/{folder.name}" in capsys.readouterr().err
    assert read_metrics(folder)["status"] == "completed" and read_metrics(folder)["steps"] == 30
    assert run_msr("train", *args, "trainer.max_steps=20", "resume=auto") == 0  # other overrides: a new run
    assert "starting a new one" in capsys.readouterr().err
    assert len(list((in_tmp / "outputs/train").glob("*/*"))) == 2


def test_checkpoints_every_n_steps_keep_the_newest(in_tmp):
    assert run_msr("train", *SETTINGS, *TINY_MODEL["gru"], "trainer.checkpoint_every=4", "trainer.keep_last=3",
                   "hydra.run.dir=run") == 0
    folders = sorted(p.name for p in (in_tmp / "run/checkpoints").iterdir())
    assert folders == ["best", "last", "step-0000024", "step-0000028"]  # last is the final step, 30
    assert json.loads((in_tmp / "run/checkpoints/last/meta.json").read_text())["step"] == 30


@pytest.mark.slow
def test_msr_reproduce_reports_every_metric_equal(in_tmp, capsys):
    assert run_msr("train", *SETTINGS, *TINY_MODEL["lstm"], *DROPOUT["lstm"], "hydra.run.dir=run") == 0
    assert run_msr("reproduce", "run") == 0
    out = capsys.readouterr().out
    assert "differs" not in out and "of" in out and "equal" in out
    [rerun] = list((in_tmp / "outputs/reproduce").glob("*/*"))
    assert results(rerun) == results(in_tmp / "run")
    versions = read_metrics(in_tmp / "run")["versions"]
    assert {"python", "torch", "datasets", "msr"} <= set(versions)

    # a changed number is reported, with a non-zero exit code
    metrics = read_metrics(in_tmp / "run")
    metrics["metrics"]["test/loss"] += 0.5
    (in_tmp / "run/metrics.json").write_text(json.dumps(metrics))
    assert run_msr("reproduce", "run") == 1
    assert "differs by 0.5" in capsys.readouterr().out


class CreatesAFile:
    """A pickle that runs code when it is loaded: it would create `path`."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_checkpoint_that_would_run_code_is_refused(in_tmp, capsys):
    import torch

    with interrupted_at(5):
        assert run_msr("train", *SETTINGS, *TINY_MODEL["gru"], "hydra.run.dir=run") == 130
    marker = in_tmp / "pwned"
    with open(in_tmp / "run/checkpoints/last/trainer_state.pt", "wb") as f:
        torch.save({"step": CreatesAFile(marker)}, f)
    pickle.loads(pickle.dumps(CreatesAFile(in_tmp / "control")))  # plain unpickling runs it
    assert (in_tmp / "control").exists()
    capsys.readouterr()
    assert run_msr("train", "resume=run") == 2
    assert "refusing to unpickle" in capsys.readouterr().err
    assert not marker.exists()
    assert read_metrics(in_tmp / "run")["status"] == "interrupted"  # the run's record is as it was


def test_damaged_checkpoints_and_foreign_formats_are_one_line_errors(in_tmp, capsys):
    assert run_msr("train", *SETTINGS, *TINY_MODEL["gru"], "hydra.run.dir=run") == 0
    best = in_tmp / "run/checkpoints/best"
    weights = (best / "model.safetensors").read_bytes()
    (best / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    assert run_msr("evaluate", "run=run", "hydra.run.dir=ev1") == 2
    assert "model.safetensors is damaged or truncated" in capsys.readouterr().err
    (best / "model.safetensors").write_bytes(weights)
    meta = json.loads((best / "meta.json").read_text())
    (best / "meta.json").write_text(json.dumps({**meta, "format": 99}))
    assert run_msr("evaluate", "run=run", "hydra.run.dir=ev2") == 2
    assert "is checkpoint format 99; this msr reads format 1" in capsys.readouterr().err
    (best / "meta.json").write_text(json.dumps(meta))
    tokenizer = json.loads((best / "tokenizer.json").read_text())
    tokenizer["model"]["vocab"]["extra"] = len(tokenizer["model"]["vocab"])
    (best / "tokenizer.json").write_text(json.dumps(tokenizer))
    assert run_msr("evaluate", "run=run", "hydra.run.dir=ev3") == 2
    assert "tokenizer.json has 19 tokens but the weights were trained for 18" in capsys.readouterr().err
    # a run saved by an msr whose config had a key this one lacks
    (in_tmp / "run/.hydra/overrides.yaml").write_text("- trainer.retired_key=1\n")
    assert run_msr("reproduce", "run") == 2
    assert "trainer.retired_key: no such key" in capsys.readouterr().err


def test_an_unwritable_output_folder_is_refused_before_any_work(in_tmp, monkeypatch, capsys):
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as root, permissions cannot be taken away
    assert run_msr("train", *TINY, "hydra.run.dir=locked/run") == 2
    assert "cannot write run folders under" in capsys.readouterr().err
    assert not (in_tmp / "locked").exists()


def test_a_vocabulary_that_no_longer_matches_refuses_to_resume(in_tmp, capsys):
    with interrupted_at(5):
        assert run_msr("train", *SETTINGS, *TINY_MODEL["lstm"], "hydra.run.dir=run") == 130
    path = in_tmp / "run/checkpoints/last/tokenizer.json"
    tokenizer = json.loads(path.read_text())
    tokenizer["model"]["vocab"]["extra"] = len(tokenizer["model"]["vocab"])
    path.write_text(json.dumps(tokenizer))
    assert run_msr("train", "resume=run") == 2
    assert "vocabulary built from today's data differs" in capsys.readouterr().err


def test_nonfinite_losses_fail_the_run_or_are_skipped_and_counted(in_tmp, monkeypatch, capsys):
    original, count = Trainer.loss, [0]

    def loss(self, inputs, labels, reduction="mean"):
        count[0] += 1
        value = original(self, inputs, labels, reduction)
        return value * float("nan") if count[0] in (3, 4) else value

    monkeypatch.setattr(Trainer, "loss", loss)
    assert run_msr("train", *SETTINGS, *TINY_MODEL["gru"], "hydra.run.dir=fails") == 1
    assert "the training loss is nan at step 5" in read_metrics(in_tmp / "fails")["reason"]
    count[0] = 0
    assert run_msr("train", *SETTINGS, *TINY_MODEL["gru"], "trainer.skip_nonfinite=true", "hydra.run.dir=skips") == 0
    metrics = read_metrics(in_tmp / "skips")
    assert metrics["status"] == "completed" and metrics["skipped_steps"] == 2


def test_a_full_disk_is_one_line_and_leaves_the_last_good_checkpoint(in_tmp, monkeypatch, capsys):
    import msr.train.checkpoint as checkpoint

    original, saves = checkpoint.save_file, [0]

    def save_file(*args, **kwargs):
        saves[0] += 1
        if saves[0] > 2:  # best and last of step 10 go through, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device", "model.safetensors")
        return original(*args, **kwargs)

    monkeypatch.setattr(checkpoint, "save_file", save_file)
    assert run_msr("train", *SETTINGS, *TINY_MODEL["gru"], "hydra.run.dir=run") == 1
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("msr: error: cannot write model.safetensors: No space left on device")
    assert "Traceback" not in err
    assert read_metrics(in_tmp / "run")["status"] == "failed"
    assert json.loads((in_tmp / "run/checkpoints/last/meta.json").read_text())["step"] == 10
    assert not [p for p in (in_tmp / "run").rglob("*") if ".tmp" in p.name or ".old" in p.name]


@pytest.mark.slow
def test_sigkill_at_random_moments_always_resumes(tmp_path):
    """SIGKILL `msr train` 20 times at random moments (checkpoints every step, so many land
    during a checkpoint write); each time the run resumes, and it finishes with loadable files."""
    import random
    import subprocess
    import sys
    import time

    args = [*TINY, "trainer.max_steps=100000", "trainer.eval_every=50", "trainer.log_every=10",
            "trainer.checkpoint_every=1", *TINY_MODEL["gru"], "hydra.run.dir=run"]
    rng = random.Random(0)
    during_write = 0
    command = [sys.executable, "-m", "msr.cli", "train", *args]
    record = tmp_path / "run/metrics.json"
    for _ in range(20):
        with open(tmp_path / "stderr.txt", "w") as err:
            before = record.stat().st_mtime_ns if record.exists() else None
            process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=err)
            # kill at a random moment after the run (re)starts, however long imports take on this machine
            deadline = time.monotonic() + 120
            while process.poll() is None and time.monotonic() < deadline and (
                    not record.exists() or record.stat().st_mtime_ns == before):
                time.sleep(0.02)
            time.sleep(rng.uniform(0.2, 2.5))
            assert process.poll() is None, (tmp_path / "stderr.txt").read_text()[-2000:]  # still training
            process.kill()
            process.wait()
        during_write += any((tmp_path / "run/checkpoints").glob(".*"))  # a half-written or swapped-out folder
        if record.exists():  # killed after the run began
            metrics = json.loads(record.read_text())  # always a whole file
            assert metrics["status"] in ("running", "interrupted")
            command = [sys.executable, "-m", "msr.cli", "train", "resume=run"]
    # the last kill may have struck between a checkpoint's two renames: .last.old then stands in for last
    step = json.loads((latest_checkpoint(tmp_path / "run") / "meta.json").read_text())["step"]
    result = msr_process("train", "resume=run", f"trainer.max_steps={step + 30}", cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert read_metrics(tmp_path / "run")["status"] == "completed"
    assert read_metrics(tmp_path / "run")["steps"] == step + 30
    assert run_msr_evaluate_loads(tmp_path)
    print(f"20 kills survived (the last at step {step}), {during_write} of them while a checkpoint was being written")


def run_msr_evaluate_loads(folder) -> bool:
    return msr_process("evaluate", "run=run", "hydra.run.dir=ev", cwd=folder).returncode == 0


@pytest.mark.slow  # over 5 s; CI runs it
def test_a_resume_is_recorded_and_reproduce_replays_it(in_tmp, capsys):
    args = [*SETTINGS, *TINY_MODEL["lstm"], *DROPOUT["lstm"], "hydra.run.dir=run"]
    with interrupted_at(13):
        assert run_msr("train", *args) == 130
    stopped = read_metrics(in_tmp / "run")
    assert stopped["steps"] == 13 and stopped["parameters"] > 0  # what it reached, though it did not finish
    capsys.readouterr()
    assert run_msr("train", "resume=run", "trainer.max_steps=40") == 0
    assert "the cosine schedule's horizon changed" in capsys.readouterr().err
    [resume] = [json.loads(line) for line in (in_tmp / "run/resumes.jsonl").read_text().splitlines()]
    assert resume["step"] == 13 and resume["overrides"] == ["trainer.max_steps=40"]
    finished = read_metrics(in_tmp / "run")
    assert finished["steps"] == 40 and finished["parameters"] == stopped["parameters"]

    # the rerun trains to step 13 under the 30-step schedule, then goes on to 40 as the run did
    assert run_msr("reproduce", "run") == 0
    out = capsys.readouterr()
    assert "differs" not in out.out and "trainer.stop_at=13" in out.err
    [rerun] = list((in_tmp / "outputs/reproduce").glob("*/*"))
    assert results(rerun) == results(in_tmp / "run")
    assert (rerun / "checkpoints/last/model.safetensors").read_bytes() == \
        (in_tmp / "run/checkpoints/last/model.safetensors").read_bytes()


@pytest.mark.slow  # over 6 s; CI runs it
def test_ctrl_c_during_reproduce_stops_the_rerun_cleanly(in_tmp):
    import subprocess
    import sys
    import time

    args = [*SETTINGS, *TINY_MODEL["lstm"], "trainer.max_steps=3000", "trainer.eval_every=1000"]
    assert run_msr("train", *args, "hydra.run.dir=run") == 0
    # its own process group, as a terminal would start it: Ctrl-C signals that whole group
    process = subprocess.Popen([sys.executable, "-m", "msr.cli", "reproduce", "run"], cwd=in_tmp,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    def training() -> bool:  # the rerun's loop has logged a step: Ctrl-C now lands mid-training
        return any(f.read_text().strip() for f in in_tmp.glob("outputs/reproduce/*/*/history.jsonl"))

    deadline = time.time() + 60
    while not training() and time.time() < deadline:
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("msr: reproduce interrupted; the rerun's folder is")
    [rerun] = list(in_tmp.glob("outputs/reproduce/*/*"))
    metrics = read_metrics(rerun)
    assert metrics["status"] == "interrupted" and 0 < metrics["steps"] < 3000


def test_reproduce_replays_only_the_resume_that_counted():
    from pathlib import Path

    from msr.reproduce import segments

    # resumed from 1000, stopped again before the next checkpoint, resumed from 1000 once more
    resumes = [{"step": 1000, "overrides": ["trainer.max_steps=4000"]},
               {"step": 1000, "overrides": ["trainer.max_steps=5000"]},
               {"step": 3000, "overrides": ["trainer.max_steps=5000", "trainer.eval_every=100"]}]
    assert segments("train", ["model=gru"], resumes, Path("T")) == [
        ["train", "model=gru", "trainer.stop_at=1000", "hydra.run.dir=T"],
        ["train", "resume=T", "trainer.max_steps=5000", "trainer.stop_at=3000"],
        ["train", "resume=T", "trainer.max_steps=5000", "trainer.eval_every=100", "trainer.stop_at=0"]]
    # a resume before the first checkpoint began afresh: it is the start
    assert segments("train", ["model=gru"], [{"step": 0, "overrides": ["seed=3"]}], Path("T")) == [
        ["train", "model=gru", "seed=3", "hydra.run.dir=T"]]


@pytest.mark.slow  # over 6 s; CI runs it
def test_a_run_saved_before_a_key_was_added_still_reproduces(in_tmp, capsys):
    import yaml

    assert run_msr("train", *SETTINGS, *TINY_MODEL["gru"], "hydra.run.dir=run") == 0
    saved = yaml.safe_load((in_tmp / "run/.hydra/config.yaml").read_text())
    del saved["trainer"]["stop_at"]  # as a run made before trainer.stop_at existed saved it
    (in_tmp / "run/.hydra/config.yaml").write_text(yaml.safe_dump(saved))
    capsys.readouterr()
    assert run_msr("reproduce", "run") == 0
    assert "keys msr added since the run, at their defaults: trainer.stop_at" in capsys.readouterr().err
    # a key whose saved value differs is still refused
    saved["trainer"]["max_steps"] = 7
    (in_tmp / "run/.hydra/config.yaml").write_text(yaml.safe_dump(saved))
    assert run_msr("reproduce", "run") == 2
    assert "differs from the one it saved (trainer.max_steps)" in capsys.readouterr().err
