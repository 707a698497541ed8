"""`msr evaluate tto.method=dynamic`: dynamic evaluation of a language model, test-time training of
a task model, both reported beside the plain scores, the checkpoint's files left as they were."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import pytest
import torch
from conftest import TINY, TINY_MODEL, read_metrics, run_msr

from msr.config import TransformerConfig
from msr.data.batching import pack
from msr.eval.dynamic import dynamic_lm_loss, input_lm_labels, train_at_test_time
from msr.eval.metrics import evaluate
from msr.models import build_model

TINY_LM = ["model.d_model=32", "model.n_layers=1", "model.n_heads=2", "model.d_ff=64", "model.max_len=16",
           "data.block_size=16", "trainer.batch_size=8", "trainer.max_steps=40", "trainer.eval_every=20",
           "trainer.log_every=10", "scheduler.warmup_steps=5"]


def hashes(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A character LM on a small corpus, and an arith LSTM: trained once for the module."""
    root = tmp_path_factory.mktemp("runs")
    (root / "corpus.txt").write_text("to be or not to be, that is the question.\n" * 60)
    assert run_msr("pretrain", "data=files", f"data.path={root / 'corpus.txt'}", "data.format=text",
                   "data.tokenizer=char", *TINY_LM, f"hydra.run.dir={root / 'lm'}") == 0
    assert run_msr("train", *TINY, "trainer.max_steps=40", *TINY_MODEL["lstm"], f"hydra.run.dir={root / 'arith'}") == 0
    return root


def test_dynamic_evaluation_reports_both_losses_and_leaves_the_checkpoint_as_it_was(runs, in_tmp):
    before = hashes(runs / "lm/checkpoints")
    assert run_msr("evaluate", f"run={runs / 'lm'}", "split=val", "tto.method=dynamic", "tto.lr=0.05",
                   "hydra.run.dir=ev") == 0
    assert hashes(runs / "lm/checkpoints") == before
    scored, trained = read_metrics(in_tmp / "ev"), read_metrics(runs / "lm")
    metrics = scored["metrics"]
    # without adaptation it is the pretraining run's own score of the best checkpoint: same blocks, same weights
    assert metrics["val/loss"] == pytest.approx(trained["metrics"]["val/loss"], rel=1e-5)
    assert metrics["tto/val/loss"] != pytest.approx(metrics["val/loss"], rel=1e-3)  # the model adapted
    assert metrics["tto/val/bits_per_character"] == pytest.approx(metrics["tto/val/loss"] / 0.69314718, rel=1e-6)
    assert scored["tto"]["segment_length"] == 16 and scored["tto"]["tokens"] == 16 * scored["examples"]
    assert scored["tto"]["optimizer"] == "sgd" and scored["status"] == "completed"


def tiny_lm():
    torch.manual_seed(0)
    return build_model(TransformerConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64, max_len=16), 12).eval()


def test_a_repeated_segment_scores_lower_after_adaptation_and_the_weights_come_back():
    model = tiny_lm()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    segment = torch.randint(4, 12, (17,), generator=torch.Generator().manual_seed(1)).tolist()
    once, twice = pack(segment, 16), pack(segment[:16] + segment, 16)  # twice: the segment, then itself again
    static = evaluate(model, once, 8)["loss"]
    tto = SimpleNamespace(lr=0.5, steps=1)
    assert dynamic_lm_loss(model, once, tto)["loss"] == pytest.approx(static, rel=1e-6)  # scored before the step
    # (first + second) / 2 < first  <=>  the second reading, after one step on the first, is lower
    repeated = dynamic_lm_loss(model, twice, tto)
    assert repeated["loss"] < static - 0.1 and repeated["tokens"] == 32
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())


def test_test_time_training_adapts_on_the_input_alone_one_example_at_a_time(runs):
    from msr.data.batching import encode
    from msr.eval.inference import load_checkpoint

    model, tokenizer, _ = load_checkpoint(runs / "arith/checkpoints/best", "cpu")
    rows = [{"input": "3 + 4 * 2 =", "target": "11", "steps": 2}, {"input": "7 - 5 =", "target": "2", "steps": 1}]
    split = encode(rows, tokenizer)
    source, labels = input_lm_labels(split, 1)
    assert tokenizer.decode(source[0].tolist()) == "7 - 5" and tokenizer.decode(labels[0].tolist()) == "- 5 ="
    plain = evaluate(model, split, 8)
    # a learning rate too small to move a weight gives the plain scores: nothing else differs
    still = train_at_test_time(model, split, SimpleNamespace(lr=1e-30, steps=3))
    assert still["loss"] == pytest.approx(plain["loss"], rel=1e-6) and still["by_steps"] == plain["by_steps"]
    moved = train_at_test_time(model, split, SimpleNamespace(lr=0.5, steps=3))
    assert moved["loss"] != pytest.approx(plain["loss"], rel=1e-3)
    # each example starts from the trained weights: the second's score does not depend on the first
    alone = train_at_test_time(model, encode(rows[1:], tokenizer), SimpleNamespace(lr=0.5, steps=3))
    assert alone["by_steps"]["1"] == moved["by_steps"]["1"]
    assert evaluate(model, split, 8)["loss"] == plain["loss"]  # the weights came back


def test_a_task_run_gets_accuracy_and_loss_with_and_without(runs, in_tmp):
    before = hashes(runs / "arith/checkpoints")
    assert run_msr("evaluate", f"run={runs / 'arith'}", "limit=12", "hydra.run.dir=plain") == 0
    assert run_msr("evaluate", f"run={runs / 'arith'}", "limit=12", "tto.method=dynamic", "tto.steps=2",
                   "tto.lr=0.1", "hydra.run.dir=ev") == 0
    assert hashes(runs / "arith/checkpoints") == before
    plain, scored = read_metrics(in_tmp / "plain"), read_metrics(in_tmp / "ev")
    # the plain scores are those of an evaluation without tto; the adapted ones sit beside them
    assert {k: v for k, v in scored["metrics"].items() if not k.startswith("tto/")} == plain["metrics"]
    assert scored["metrics"]["tto/test/loss"] != pytest.approx(plain["metrics"]["test/loss"], rel=1e-4)
    assert 0 <= scored["metrics"]["tto/test/accuracy"] <= 1
    assert scored["tto"] == {"method": "dynamic", "optimizer": "sgd", "lr": 0.1, "steps": 2,
                             "accuracy_by_steps": scored["tto"]["accuracy_by_steps"],
                             "seconds": scored["tto"]["seconds"]}
    assert set(scored["tto"]["accuracy_by_steps"]) == set(plain["accuracy_by_steps"])


@pytest.mark.parametrize("override, message", [
    ("tto.lr=0", "msr: error: tto.lr=0.0 is not allowed: must be a finite number > 0"),
    ("tto.lr=-0.1", "msr: error: tto.lr=-0.1 is not allowed: must be a finite number > 0"),
    ("tto.steps=0", "msr: error: tto.steps=0 is not allowed: must be a positive integer"),
    ("tto.segment_length=-4", "msr: error: tto.segment_length=-4 is not allowed: must be >= 0"),
])
def test_bad_tto_values_are_one_line_before_any_work(runs, in_tmp, capsys, override, message):
    assert run_msr("evaluate", f"run={runs / 'arith'}", "tto.method=dynamic", override, "hydra.run.dir=ev") == 2
    err = capsys.readouterr().err
    assert err.strip() == message and not (in_tmp / "ev").exists()


def test_tto_on_a_run_without_checkpoints_or_an_ensemble_is_refused_before_any_work(runs, in_tmp, capsys):
    (in_tmp / "empty").mkdir()
    assert run_msr("evaluate", "run=empty", "tto.method=dynamic", "hydra.run.dir=ev") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("msr: error: run='empty' is not allowed: tto.method=dynamic")
    assert "has no checkpoints/best/model.safetensors" in err and not (in_tmp / "ev").exists()
    arith = runs / "arith"
    assert run_msr("evaluate", f"run=[{arith},{arith}]", "tto.method=dynamic", "hydra.run.dir=ev") == 2
    assert "give one run, not an ensemble" in capsys.readouterr().err and not (in_tmp / "ev").exists()
