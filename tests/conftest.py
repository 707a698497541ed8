"""Shared helpers: run `msr` in-process (fast) or as a subprocess (exit codes, stderr)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from msr.cli import main

# A tiny configuration: every entry point finishes in a few seconds on two CPU cores.
TINY = [
    "data.train.size=400", "data.val.size=40", "data.test.size=40",
    "trainer.max_steps=20", "trainer.eval_every=10", "trainer.log_every=5", "trainer.batch_size=16",
    "scheduler.warmup_steps=2",
]
TINY_MODEL = {
    "rnn": ["model=rnn", "model.embedding_size=16", "model.hidden_size=32"],
    "lstm": ["model=lstm", "model.embedding_size=16", "model.hidden_size=32"],
    "gru": ["model=gru", "model.embedding_size=16", "model.hidden_size=32"],
    "transformer": ["model=transformer", "model.d_model=32", "model.n_layers=2", "model.n_heads=2", "model.d_ff=64"],
}


def assert_cached_decoding_equals_recomputation(model, vocab_size: int = 11, length: int = 10) -> None:
    """A model's state carries a sequence on as reading it whole would: token by token after a
    prompt of 4, a chunk after a prompt of 6, and that chunk after keeping rows 2 and 0 (beams)."""
    import torch

    tokens = torch.randint(0, vocab_size, (3, length))
    with torch.no_grad():
        full, _ = model(tokens)
        logits, state = model(tokens[:, :4])
        for t in range(4, length):
            logits, state = model(tokens[:, t : t + 1], state)
        _, state = model(tokens[:, :6])
        tail, _ = model(tokens[:, 6:], state)
        kept_tail, _ = model(tokens[[2, 0], 6:], model.reorder_state(state, torch.tensor([2, 0])))
    torch.testing.assert_close(logits[:, -1], full[:, -1], atol=1e-5, rtol=0)
    torch.testing.assert_close(tail, full[:, 6:], atol=1e-5, rtol=0)
    torch.testing.assert_close(kept_tail, full[[2, 0], 6:], atol=1e-5, rtol=0)


def run_msr(*args: str) -> int:
    """Call msr's entry point in this process; returns the exit code."""
    argv = sys.argv
    try:
        main(list(args))
        return 0
    except SystemExit as exit:
        return exit.code if isinstance(exit.code, int) else 1
    finally:
        sys.argv = argv


def msr_process(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "msr.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=env)


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(autouse=True, scope="session")
def data_cache(tmp_path_factory) -> Path:
    """Generated tasks and datasets' cache go to one folder per test session, not ~/.cache."""
    path = tmp_path_factory.mktemp("msr-cache")
    previous = os.environ.get("MSR_CACHE")
    os.environ["MSR_CACHE"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("MSR_CACHE", None)
    else:
        os.environ["MSR_CACHE"] = previous


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run with the working directory in a fresh temporary folder (Hydra writes outputs/ there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(autouse=True)
def fresh_joblib_workers():
    """joblib keeps its worker processes for the next sweep in this process, and they keep the
    working directory they started in: a later test's sweep would write into an earlier test's
    folder. A user's sweep is one process, so only tests meet this."""
    yield
    executor = sys.modules.get("joblib.externals.loky.reusable_executor")
    if executor is not None and executor._executor is not None:
        executor._executor.shutdown(wait=True)
        executor._executor = None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = Path(__file__).resolve().parents[2] / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"real data not found at {path}")
    return path
