"""Data-parallel training (`distributed.nproc_per_node=2`): 2 gloo workers on the CPU give the
run one process gives with the same global batch, in one run folder that rank 0 alone writes;
they stop, resume and fail as one run; and sharded evaluation equals one process's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY, msr_process, read_metrics, run_msr

# a Transformer with dropout and an L2 penalty over 2 micro-batches: every path of the step is sharded
DDP = [*TINY, "model=transformer", "model.d_model=16", "model.n_layers=1", "model.n_heads=2", "model.d_ff=32",
       "trainer.grad_accum_steps=2", "trainer.l2=1e-4"]
TWO = ["distributed.nproc_per_node=2"]


def weights(run: Path, checkpoint: str = "last") -> dict:
    return load_file(str(run / "checkpoints" / checkpoint / "model.safetensors"))


def history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]


def the_run(root: Path) -> Path:
    [run] = list(root.glob("outputs/train/*/*"))
    return run


@pytest.mark.slow  # over 6 s; CI runs it
def test_two_workers_train_the_run_one_process_trains(tmp_path):
    single = msr_process("train", *DDP, "hydra.run.dir=single", cwd=tmp_path)
    assert single.returncode == 0, single.stderr
    two = msr_process("train", *DDP, *TWO, cwd=tmp_path)
    assert two.returncode == 0, two.stderr
    run = the_run(tmp_path)  # one folder for both workers
    one, both = read_metrics(tmp_path / "single"), read_metrics(run)
    for key, value in one["metrics"].items():
        assert both["metrics"][key] == pytest.approx(value, rel=1e-5), key
    for name, tensor in weights(tmp_path / "single").items():
        torch.testing.assert_close(weights(run)[name], tensor, rtol=1e-4, atol=1e-5)  # Adam magnifies float noise near 0
    losses = {r["step"]: r["train/loss"] for r in history(run) if "train/loss" in r}
    assert list(losses) == [5, 10, 15, 20] and len(history(run)) == 8  # each record once: rank 0 alone writes
    assert losses == pytest.approx({r["step"]: r["train/loss"] for r in history(tmp_path / "single")
                                    if "train/loss" in r}, rel=1e-5)
    assert len(list(run.glob("events.out.tfevents.*"))) == 1 and (run / ".hydra/config.yaml").is_file()
    log = (run / "msr.log").read_text()
    assert "[rank 1]" not in log and log.count("test accuracy") == 1
    assert both["status"] == "completed" and not (run / "worker_errors.jsonl").exists()


@pytest.mark.parametrize("override, message", [
    ("trainer.batch_size=15", "trainer.batch_size=15 is not allowed: is the global batch of a step, shared by 2 "
                              "workers: give a multiple of 2"),
    ("distributed.backend=mpi", "distributed.backend='mpi' is not allowed: one of auto, gloo, nccl"),
    ("distributed.nnodes=2", "distributed.rdzv_endpoint='' is not allowed: several machines need a meeting point"),
])
def test_bad_distributed_settings_are_one_line_errors(override, message, in_tmp, capsys):
    assert run_msr("train", *DDP, *TWO, override) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not (in_tmp / "outputs").exists()


def test_a_sweep_of_data_parallel_runs_is_refused(in_tmp, capsys):
    assert run_msr("train", "-m", *DDP, *TWO, "seed=0,1") == 2
    assert "distributed.nproc_per_node=2 cannot go with it" in capsys.readouterr().err


@pytest.mark.slow
def test_a_data_parallel_run_paused_and_resumed_equals_one_run_bit_for_bit(tmp_path):
    extra = [*DDP, *TWO, "model.dropout=0.1", "trainer.max_steps=20"]  # dropout: each worker's stream is saved
    assert msr_process("train", *extra, "hydra.run.dir=whole", cwd=tmp_path).returncode == 0
    paused = msr_process("train", *extra, "trainer.stop_at=10", "hydra.run.dir=cut", cwd=tmp_path)
    assert paused.returncode == 0, paused.stderr
    state = torch.load(tmp_path / "cut/checkpoints/last/trainer_state.pt", weights_only=True)
    assert state["step"] == 10 and len(state["worker_rng"]) == 2
    assert not torch.equal(state["worker_rng"][0]["torch"], state["worker_rng"][1]["torch"])
    resumed = msr_process("train", "resume=cut", *TWO, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    for name, tensor in weights(tmp_path / "whole").items():
        assert torch.equal(weights(tmp_path / "cut")[name], tensor), name
    assert read_metrics(tmp_path / "cut")["metrics"] == read_metrics(tmp_path / "whole")["metrics"]

    # A resume keeps the run's settings, the number of workers too, unless it is overridden.
    other = msr_process("train", "resume=cut", "trainer.max_steps=24", "distributed.nproc_per_node=1", cwd=tmp_path)
    assert other.returncode == 0, other.stderr
    assert "resuming with 1 workers where the checkpoint had 2: the batches are the same" in other.stderr


@pytest.mark.slow
def test_sigterm_stops_every_worker_with_one_checkpoint(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    parent = subprocess.Popen([sys.executable, "-m", "msr.cli", "train", *DDP, *TWO, "trainer.max_steps=100000",
                               "trainer.eval_every=100000", "trainer.log_every=2", "hydra.run.dir=run"],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not ((tmp_path / "run/history.jsonl").exists() and len(history(tmp_path / "run")) >= 2):
        assert time.monotonic() < deadline and parent.poll() is None, parent.communicate()
        time.sleep(0.1)
    parent.send_signal(signal.SIGTERM)
    _, err = parent.communicate(timeout=60)
    record = read_metrics(tmp_path / "run")
    assert parent.returncode == 143, err
    assert record["status"] == "interrupted" and record["reason"] == "stopped by SIGTERM"
    state = torch.load(tmp_path / "run/checkpoints/last/trainer_state.pt", weights_only=True)
    assert state["step"] == record["steps"] > 0 and len(state["worker_rng"]) == 2
    assert err.count("resume with: msr train resume=") == 1  # rank 0 alone says it


CRASH = """
import os
if os.environ.get("RANK") == "1":
    import msr.train.loop as loop
    original = loop.optimizer_step
    def optimizer_step(trainer, state, *args):
        if state.step == 3:
            raise RuntimeError("rank 1 lost its GPU")
        return original(trainer, state, *args)
    loop.optimizer_step = optimizer_step
"""


@pytest.mark.slow
def test_a_crashing_worker_fails_the_run_with_its_error(tmp_path):
    (tmp_path / "inject").mkdir()
    (tmp_path / "inject/sitecustomize.py").write_text(CRASH)  # loaded by every worker's interpreter
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "inject"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "msr.cli", "train", *DDP, *TWO, "hydra.run.dir=run"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    record = read_metrics(tmp_path / "run")
    assert record["status"] == "failed", record
    assert record["reason"] == "worker 1 of 2 failed: RuntimeError: rank 1 lost its GPU"
    log = (tmp_path / "run/msr.log").read_text()
    assert "[rank 1] msr train crashed" in log and "rank 1 lost its GPU" in log


@pytest.mark.slow
def test_torchrun_started_workers_share_the_folder_rank_0_claims(tmp_path):
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "msr.cli", "train", *DDP], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    run = the_run(tmp_path)
    assert read_metrics(run)["status"] == "completed" and len(history(run)) == 8


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_machines_meet_at_the_endpoint_and_write_one_run_folder(tmp_path):
    """Two `msr train` commands, as two machines of one job would start them (srun on SLURM):
    they meet at node 0's endpoint, and only node 0's side makes a run folder."""
    nodes = ["distributed.nnodes=2", f"distributed.rdzv_endpoint=127.0.0.1:{free_port()}", "distributed.rdzv_id=job7"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    machines = [subprocess.Popen([sys.executable, "-m", "msr.cli", "train", *DDP, *nodes, f"distributed.node_rank={n}"],
                                 cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for n in (1, 0)]
    for machine in machines:
        _, err = machine.communicate(timeout=120)
        assert machine.returncode == 0, err
    run = the_run(tmp_path)  # one folder, although each machine's command started alone
    assert read_metrics(run)["status"] == "completed" and len(history(run)) == 8
    single = msr_process("train", *DDP, "hydra.run.dir=single", cwd=tmp_path)
    assert read_metrics(run)["metrics"] == pytest.approx(read_metrics(tmp_path / "single")["metrics"], rel=1e-5)


@pytest.mark.slow  # over 5 s; CI runs it
def test_a_user_error_every_worker_meets_is_said_once(tmp_path):
    done = msr_process("train", *DDP, *TWO, "model.max_len=4", "hydra.run.dir=run", cwd=tmp_path)  # found with the data
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower() or "exitcode" in line]
    assert len(errors) == 1 and errors[0].startswith("msr: error: model.max_len=4"), done.stderr  # no launcher lines
    assert read_metrics(tmp_path / "run")["status"] == "failed"


@pytest.mark.slow  # over 6 s; CI runs it
def test_a_machine_that_finds_no_one_at_the_endpoint_gives_up_in_one_line(tmp_path):
    alone = ["distributed.nnodes=2", "distributed.node_rank=1", f"distributed.rdzv_endpoint=127.0.0.1:{free_port()}",
             "distributed.rdzv_id=job7", "distributed.timeout=2"]
    t0 = time.monotonic()
    done = msr_process("train", *DDP, *alone, cwd=tmp_path)
    assert done.returncode == 2 and time.monotonic() - t0 < 60  # the timeout holds: no hang
    assert done.stderr.count("\n") == 1 and "did not meet at distributed.rdzv_endpoint=127.0.0.1:" in done.stderr
    assert not (tmp_path / "outputs").exists()


def score_shard(rank: int, port: int, split, model, out: Path) -> None:
    import torch.distributed as dist

    from msr.eval.metrics import evaluate

    os.environ.update(RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo")
    result = evaluate(model, split, batch_size=3, rows=torch.tensor([9, 2, 7, 4, 0, 5, 1]))
    torch.save({k: v for k, v in result.items()}, out / f"rank{rank}.pt")
    dist.destroy_process_group()


def test_sharded_evaluation_equals_one_process(tmp_path):
    import torch.multiprocessing as mp

    from msr.config import RecurrentConfig
    from msr.data.batching import encode
    from msr.data.tokenizer import TextTokenizer
    from msr.eval.metrics import evaluate
    from msr.models import build_model

    records = [{"input": " ".join("ab"[(i >> b) & 1] for b in range(i % 4 + 1)), "target": "ab"[i % 2], "steps": i % 3}
               for i in range(10)]
    tokenizer = TextTokenizer.build((r["input"] + " " + r["target"] for r in records), "word", 0)
    split = encode(records, tokenizer)
    torch.manual_seed(0)
    model = build_model(RecurrentConfig(name="gru", embedding_size=8, hidden_size=8), tokenizer.vocab_size)
    alone = evaluate(model, split, batch_size=3, rows=torch.tensor([9, 2, 7, 4, 0, 5, 1]))
    mp.spawn(score_shard, args=(free_port(), split, model, tmp_path), nprocs=2)
    for rank in (0, 1):
        shared = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        assert torch.equal(shared["correct"], alone["correct"]) and shared["by_steps"] == alone["by_steps"]
        assert shared["loss"] == pytest.approx(alone["loss"], rel=1e-12)
        assert shared["token_accuracy"] == alone["token_accuracy"]
        torch.testing.assert_close(shared["logprobs"], alone["logprobs"])
