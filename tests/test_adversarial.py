"""trainer.adversarial: fgm/pgd perturbations of the input embeddings, refreshed adversarial
rewrites of training rows, robust test accuracy, and the one-line refusals of bad settings."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from conftest import TINY, TINY_MODEL, read_metrics, run_msr
from msr.augment.teacher import Answer
from msr.config import RecurrentConfig, SchedulerConfig, SGDConfig
from msr.config.data import ChainConfig, SplitConfig
from msr.config.trainer import AdversarialConfig, Precision, TrainerConfig
from msr.data import load_data, present
from msr.data.batching import IGNORE, encode
from msr.data.tokenizer import TextTokenizer
from msr.models import build_model
from msr.train.adversarial import AdversarialLoss, Refresher
from msr.train.loop import Trainer
from msr.train.optim import build_optimizer, build_scheduler

SMALL = [*TINY, *TINY_MODEL["lstm"]]


def tiny_problem(seed: int = 0):
    """A tiny LSTM, 3 sequences of 6 tokens (the last 2 of each are targets) and a clean loss."""
    torch.manual_seed(seed)
    model = build_model(RecurrentConfig(name="lstm", embedding_size=4, hidden_size=8), 10).eval()
    inputs = torch.randint(0, 10, (3, 6))
    labels = torch.full((3, 6), IGNORE)
    labels[:, 4:] = torch.randint(0, 10, (3, 2))

    def clean(inputs, labels, reduction="mean"):
        logits, _ = model(inputs)
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE, reduction=reduction)

    return model, inputs, labels, clean


def by_hand(model, inputs, labels, delta=None):
    """The loss with `delta` added to the embeddings and its gradient by them, computed apart
    from msr/train/adversarial.py: the embeddings fed in through the LSTM's own layers."""
    embedded = model.embed(inputs).detach().requires_grad_()
    out, _ = model.rnn(embedded + (0 if delta is None else delta))
    logits = model.head(out)
    loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE)
    (gradient,) = torch.autograd.grad(loss, embedded)
    return loss.detach(), gradient


def test_fgm_moves_each_sequence_by_epsilon_along_the_gradient():
    model, inputs, labels, clean = tiny_problem()
    loss = AdversarialLoss(clean, model, AdversarialConfig(method="fgm", epsilon=0.5, weight=0.25))
    clean_loss, gradient = by_hand(model, inputs, labels)
    delta = loss.perturbation(gradient, inputs, labels)
    norms = delta.flatten(1).norm(dim=1)
    assert torch.allclose(norms, torch.full((3,), 0.5), atol=1e-6)
    expected = 0.5 * gradient / gradient.flatten(1).norm(dim=1).view(3, 1, 1)
    assert torch.allclose(delta, expected, atol=1e-7)
    # the loss the trainer backpropagates: a quarter of the perturbed loss, three quarters clean
    perturbed, _ = by_hand(model, inputs, labels, expected)
    assert perturbed > clean_loss  # a step along the gradient raises the loss
    assert torch.allclose(loss(inputs, labels), 0.75 * clean_loss + 0.25 * perturbed, atol=1e-6)


def test_pgd_stays_inside_the_ball_and_one_step_is_fgm():
    model, inputs, labels, clean = tiny_problem(1)
    _, gradient = by_hand(model, inputs, labels)
    fgm = AdversarialLoss(clean, model, AdversarialConfig(method="fgm", epsilon=2.0)).perturbation(gradient,
                                                                                                   inputs, labels)
    one = AdversarialLoss(clean, model, AdversarialConfig(method="pgd", epsilon=2.0, steps=1))
    assert torch.allclose(one.perturbation(gradient, inputs, labels), fgm, atol=1e-6)  # 2.5 eps, projected back
    for steps in (2, 5):
        pgd = AdversarialLoss(clean, model, AdversarialConfig(method="pgd", epsilon=2.0, steps=steps))
        delta = pgd.perturbation(gradient, inputs, labels)
        norms = delta.flatten(1).norm(dim=1)
        assert (norms <= 2.0 + 1e-5).all() and (norms > 1.0).all(), norms
        assert not torch.allclose(delta, fgm, atol=1e-4)  # later steps follow the gradient where they got to
        assert by_hand(model, inputs, labels, delta)[0] > by_hand(model, inputs, labels)[0]


def trainer_for(adversarial: AdversarialConfig, seed: int = 0) -> Trainer:
    model, _, _, _ = tiny_problem(seed)
    optimizer = build_optimizer(SGDConfig(lr=0.5, momentum=0.0), model)
    return Trainer(model, optimizer, build_scheduler(SchedulerConfig(), optimizer, 10),
                   TrainerConfig(precision=Precision.fp32, adversarial=adversarial), torch.device("cpu"))


def test_method_none_leaves_the_loss_and_weight_zero_gives_the_clean_loss():
    _, inputs, labels, _ = tiny_problem()
    plain = trainer_for(AdversarialConfig(epsilon=5.0, weight=1.0))  # method=none: the rest is not read
    assert not isinstance(plain.loss, AdversarialLoss)
    zero = trainer_for(AdversarialConfig(method="fgm", epsilon=5.0, weight=0.0))
    assert isinstance(zero.loss, AdversarialLoss)
    assert torch.equal(zero.loss(inputs, labels), plain.loss(inputs, labels))
    steps = [trainer_for(AdversarialConfig(method=m, weight=0.0)).step([(inputs, labels)]) for m in ("none", "pgd")]
    assert torch.equal(*steps)


@pytest.mark.slow  # an end-to-end run; CI runs it
def test_method_none_trains_as_without_the_option(in_tmp):
    short = ["trainer.max_steps=6", "trainer.eval_every=3", "trainer.log_every=3"]
    assert run_msr("train", *SMALL, *short, "hydra.run.dir=plain") == 0
    assert run_msr("train", *SMALL, *short, "trainer.adversarial.epsilon=3", "hydra.run.dir=none") == 0
    assert read_metrics(in_tmp / "plain")["metrics"] == read_metrics(in_tmp / "none")["metrics"]


def fooled_by_rewrites(refresher: Refresher) -> None:
    """The search's model, replaced: right on every original training input, wrong on anything else."""
    known = {r["input"]: r["target"] for r in refresher.raw}
    refresher.teacher.answer = lambda inputs: [Answer(known.get(x, "wrong"), None, 1.0) for x in inputs]


def test_a_refresh_writes_rewrites_into_the_training_rows_and_puts_them_back_later(data_cache):
    data = ChainConfig(train=SplitConfig(size=60), val=SplitConfig(size=10), test=SplitConfig(size=10))
    cfg = SimpleNamespace(data=data, paths=SimpleNamespace(cache=str(data_cache)), seed=0,
                          trainer=SimpleNamespace(adversarial=AdversarialConfig(refresh_every=5, refresh_size=20)))
    raw = load_data(data, cfg.paths).raw["train"]
    tokenizer = TextTokenizer.build([r["input"] + " " + r["target"] for r in raw])
    train = encode(present(raw, data), tokenizer)
    original = train.inputs.clone()
    refresher = Refresher(cfg, build_model(RecurrentConfig(name="lstm"), tokenizer.vocab_size), tokenizer, train,
                          torch.device("cpu"))
    fooled_by_rewrites(refresher)
    logged = []
    assert not refresher(4, logged.append) and not logged  # not due
    assert refresher(5, logged.append)
    first = refresher.replaced
    assert logged[0]["step"] == 5 and logged[0]["adversarial/searched"] == 20
    assert logged[0]["adversarial/rewritten"] == len(first) >= 15  # chain renames entities in any example
    for row in first:  # each now holds an input the model has never been right on, with the same answer
        text = tokenizer.decode(train.inputs[row, : int(train.lengths[row])].tolist())
        assert text.split("<sep>")[0].strip() not in {r["input"] for r in raw}
        answer = encode(present([raw[row]], data), tokenizer).labels[0]
        assert torch.equal(train.labels[row][train.labels[row] != IGNORE], answer[answer != IGNORE])
    width = original.shape[1]  # a longer rewrite (an added distractor) widens every row with padding
    untouched = [i for i in range(60) if i not in first]
    assert torch.equal(train.inputs[untouched, :width], original[untouched])
    assert (train.inputs[untouched, width:] == tokenizer.pad_id).all()
    assert (train.labels[untouched, width:] == IGNORE).all()
    assert refresher(10, logged.append)
    restored = [i for i in first if i not in refresher.replaced]
    assert restored and torch.equal(train.inputs[restored, :width], original[restored])
    assert refresher.totals["refreshes"] == 2 and refresher.totals["searched"] == 40


@pytest.mark.slow  # an end-to-end run; CI runs it
def test_a_run_logs_each_refresh_and_reports_robust_accuracy(in_tmp):
    args = [*SMALL, "data=chain", "trainer.adversarial.method=fgm", "trainer.adversarial.refresh_every=10",
            "trainer.adversarial.refresh_size=30", "trainer.adversarial.robust_test=true", "hydra.run.dir=run"]
    assert run_msr("train", *args) == 0
    history = [json.loads(line) for line in (in_tmp / "run/history.jsonl").read_text().splitlines()]
    refreshes = [h for h in history if "adversarial/searched" in h]
    assert [(h["step"], h["adversarial/searched"]) for h in refreshes] == [(10, 30), (20, 30)]
    assert all(h["adversarial/refresh_seconds"] > 0 for h in refreshes)
    metrics = read_metrics(in_tmp / "run")
    report = metrics["adversarial"]
    assert report["refresh"]["refreshes"] == 2 and report["refresh"]["searched"] == 60
    assert report["refresh"]["rewritten"] == sum(h["adversarial/rewritten"] for h in refreshes)
    test = report["robust_test"]
    assert test["examples"] == 40 and (test["tries"], test["edits"]) == (4, 2)
    robust = metrics["metrics"]["test/robust_accuracy"]
    assert robust == (test["teacher_right"] - test["flipped"]) / 40 <= metrics["metrics"]["test/accuracy"] + 1e-9


@pytest.mark.parametrize("overrides, expected", [
    (["trainer.adversarial.method=fgm", "trainer.adversarial.epsilon=0"],
     "trainer.adversarial.epsilon=0.0 is not allowed: must be > 0 with trainer.adversarial.method=fgm"),
    (["trainer.adversarial.method=pgd", "trainer.adversarial.steps=0"],
     "trainer.adversarial.steps=0 is not allowed: must be a positive integer with trainer.adversarial.method=pgd"),
    (["trainer.adversarial.weight=1.5"], "trainer.adversarial.weight=1.5 is not allowed: must be in [0, 1]"),
    (["trainer.adversarial.refresh_every=5", "trainer.adversarial.refresh_size=401"],
     "trainer.adversarial.refresh_size=401 is not allowed: must be at most data.train.size=400"),
    (["trainer.adversarial.method=adversarial"], "trainer.adversarial.method"),
])
def test_bad_settings_are_refused_in_one_line(overrides, expected, capsys, in_tmp):
    assert run_msr("train", *SMALL, *overrides, "hydra.run.dir=run") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("msr: error: ") and expected in err, err
    assert not (in_tmp / "run" / "metrics.json").exists()


def test_refresh_is_refused_for_pretraining(capsys, in_tmp):
    assert run_msr("pretrain", *SMALL, "data=arith", "data.block_size=16", "trainer.adversarial.refresh_every=5",
                   "hydra.run.dir=run") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "trainer.adversarial.refresh_every=5 is not allowed: must be 0 for msr " \
                                     "pretrain" in err, err
