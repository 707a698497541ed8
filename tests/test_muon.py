"""optimizer=muon (torch's Muon on the hidden matrices, AdamW on the rest, as one optimizer) and
the choice of fused Adam/AdamW kernels."""

from __future__ import annotations

import copy
import io
import json

import pytest
import torch

from conftest import TINY, TINY_MODEL, run_msr
from msr.config import (AdamConfig, AdamWConfig, LearningRateScale, LinearConfig, MuonConfig, RecurrentConfig,
                        SGDConfig, TrainerConfig, TransformerConfig)
from msr.models import build_model
from msr.train.loop import Trainer
from msr.train.muon import MuonWithAdamW
from msr.train.optim import build_optimizer, build_scheduler, fused, logged_lr
from msr.train.transfer import lr_scales

VOCAB = 11
# untied, with learned positions, two layers: every kind of parameter is there
TRANSFORMER = TransformerConfig(d_model=16, n_layers=2, n_heads=2, d_ff=32, max_len=16, tie_embeddings=False)
LSTM = RecurrentConfig(name="lstm", embedding_size=8, hidden_size=16, num_layers=2)
# not the defaults, so that each option is seen to reach torch
OPTIONS = dict(lr=0.05, weight_decay=0.1, momentum=0.9, nesterov=False, ns_steps=3, adjust_lr_fn="match_rms_adamw",
               adamw_lr=0.01, adamw_weight_decay=0.2, betas=[0.8, 0.95], eps=1e-6)


def model_and_batch(cfg, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(cfg, VOCAB), torch.randint(0, VOCAB, (4, 9))


def backward(model, tokens) -> None:
    logits, _ = model(tokens[:, :-1])
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten()).backward()


def train(model, optimizer, tokens, steps: int, scheduler=None) -> None:
    for _ in range(steps):
        backward(model, tokens)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if scheduler is not None:
            scheduler.step()


def sides(model, optimizer) -> tuple[set, set]:
    names = {id(p): name for name, p in model.named_parameters()}
    named = [(g["muon"], {names[id(p)] for p in g["params"]}) for g in optimizer.param_groups]
    return (set().union(*(n for muon, n in named if muon)), set().union(*(n for muon, n in named if not muon)))


@pytest.mark.parametrize("cfg, matrices", [
    (TRANSFORMER, {f"blocks.{i}.{m}.weight" for i in range(2) for m in ("attn.qkv", "attn.proj", "mlp.0", "mlp.2")}),
    (LSTM, {f"rnn.weight_{k}_l{i}" for i in range(2) for k in ("ih", "hh")}),
])
def test_muon_takes_exactly_the_hidden_matrices(cfg, matrices):
    model, _ = model_and_batch(cfg)
    muon, adamw = sides(model, build_optimizer(MuonConfig(), model))
    assert muon == matrices
    assert adamw == {name for name, _ in model.named_parameters()} - matrices
    assert {"embed.weight", "head.weight"} <= adamw  # 2-D, but a table and the unembedding
    if cfg is TRANSFORMER:
        assert {"positions", "ln_f.weight", "blocks.0.ln1.bias", "blocks.1.mlp.0.bias"} <= adamw


def test_a_tied_head_is_the_embedding_and_stays_adamws():
    model, _ = model_and_batch(TransformerConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, max_len=16))
    muon, adamw = sides(model, build_optimizer(MuonConfig(), model))
    assert "embed.weight" in adamw and not any(name.startswith(("embed", "head")) for name in muon)


def test_one_step_is_muons_on_the_matrices_and_adamws_on_the_rest():
    """Three steps (momentum and Adam's moments in play) of the combined optimizer against torch's
    Muon and AdamW each given its share of the parameters and the same gradients."""
    model, tokens = model_and_batch(TRANSFORMER)
    reference, initial = copy.deepcopy(model), copy.deepcopy(model)
    optimizer = build_optimizer(MuonConfig(**OPTIONS), model)
    muon, _ = sides(model, optimizer)
    params = dict(reference.named_parameters())
    matrices = [p for name, p in params.items() if name in muon]
    rest = [p for name, p in params.items() if name not in muon]
    torch_muon = torch.optim.Muon(matrices, lr=0.05, weight_decay=0.1, momentum=0.9, nesterov=False, ns_steps=3,
                                  adjust_lr_fn="match_rms_adamw")
    torch_adamw = torch.optim.AdamW([{"params": [p for p in rest if p.dim() >= 2], "weight_decay": 0.2},
                                     {"params": [p for p in rest if p.dim() < 2], "weight_decay": 0.0}],
                                    lr=0.01, betas=(0.8, 0.95), eps=1e-6, fused=True)
    for _ in range(3):
        backward(model, tokens)
        backward(reference, tokens)
        for p, q in zip(model.parameters(), reference.parameters()):
            assert torch.equal(p.grad, q.grad)
        optimizer.step()
        torch_muon.step()
        torch_adamw.step()
        for opt in (optimizer, torch_muon, torch_adamw):
            opt.zero_grad(set_to_none=True)
    assert not any(torch.equal(p, q) for p, q in zip(model.parameters(), initial.parameters()))
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        assert torch.equal(p, q), name


def test_the_state_dict_resumes_bit_for_bit():
    """Through torch.save and torch.load(weights_only=True), as trainer_state.pt goes."""
    model, tokens = model_and_batch(LSTM)
    cfg, schedule = MuonConfig(**OPTIONS), LinearConfig(warmup_steps=2)
    trainer = Trainer(model, (opt := build_optimizer(cfg, model)), build_scheduler(schedule, opt, 8),
                      TrainerConfig(precision="fp32"), torch.device("cpu"))
    labels = tokens[:, 1:]
    for _ in range(3):
        trainer.step([(tokens[:, :-1], labels)])
    buffer = io.BytesIO()
    torch.save(trainer.state_dict(), buffer)
    resumed_model = copy.deepcopy(model)
    resumed = Trainer(resumed_model, (opt := build_optimizer(cfg, resumed_model)), build_scheduler(schedule, opt, 8),
                      TrainerConfig(precision="fp32"), torch.device("cpu"))
    buffer.seek(0)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    for _ in range(3):
        trainer.step([(tokens[:, :-1], labels)])
        resumed.step([(tokens[:, :-1], labels)])
    for (name, p), q in zip(model.named_parameters(), resumed_model.parameters()):
        assert torch.equal(p, q), name
    assert [g["parts"] for g in resumed.optimizer.param_groups] == [g["parts"] for g in trainer.optimizer.param_groups]


def test_the_schedule_reaches_both_sides():
    model, tokens = model_and_batch(TRANSFORMER)
    optimizer = build_optimizer(MuonConfig(lr=0.02, adamw_lr=0.004), model)
    scheduler = build_scheduler(LinearConfig(warmup_steps=2, min_lr_ratio=0.0), optimizer, total_steps=4)
    assert {(g["muon"], g["lr"]) for g in optimizer.param_groups} == {(True, 0.01), (False, 0.002)}  # warmup 1/2
    assert logged_lr(optimizer) == 0.01  # optimizer.lr's share, as history.jsonl logs it
    train(model, optimizer, tokens, 3, scheduler)  # the last step's rate is 0: nothing may move
    before = [p.clone() for p in model.parameters()]
    assert all(g["lr"] == 0 for inner in optimizer.inner.values() for g in inner.param_groups)
    train(model, optimizer, tokens, 1)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))


def test_finetunes_learning_rate_scales_split_into_muon_and_adamw_groups():
    model, _ = model_and_batch(TRANSFORMER)
    scales = lr_scales(model, LearningRateScale(embeddings=3.0, head=2.0, layer_decay=0.5), layers=2)
    optimizer = build_optimizer(MuonConfig(lr=0.02, adamw_lr=0.004), model, scales)
    names = {id(p): name for name, p in model.named_parameters()}
    for group in optimizer.param_groups:
        for p in group["params"]:
            base = 0.02 if group["muon"] else 0.004
            assert group["lr"] == pytest.approx(base * scales[names[id(p)]])
    assert {(g["muon"], g["lr"]) for g in optimizer.param_groups if g["muon"]} == {(True, 0.01), (True, 0.02)}
    assert isinstance(optimizer, MuonWithAdamW) and isinstance(optimizer, torch.optim.Optimizer)


def test_fused_kernels_where_torch_has_them():
    model, _ = model_and_batch(LSTM)
    for cfg in (AdamConfig(), AdamWConfig()):
        optimizer = build_optimizer(cfg, model)
        assert optimizer.defaults["fused"] is True and all(g["fused"] for g in optimizer.param_groups)  # CPU has them
    muon = build_optimizer(MuonConfig(), model)
    assert all(g["fused"] is True for g in muon.param_groups if not g["muon"])
    assert not build_optimizer(SGDConfig(), model).defaults["fused"]  # only Adam and AdamW are asked
    assert fused([torch.zeros(2), torch.zeros(2, dtype=torch.float64)])
    assert not fused([torch.zeros(2), torch.zeros(2, device="meta")])  # one device without them: foreach
    assert not fused([torch.zeros(2, dtype=torch.int64)])


@pytest.mark.parametrize("override, expected", [
    ("optimizer.ns_steps=0", "optimizer.ns_steps=0 is not allowed: must be an integer in [1, 99]"),
    ("optimizer.momentum=1.5", "optimizer.momentum=1.5 is not allowed: must be in [0, 1)"),
    ("optimizer.adamw_lr=0", "optimizer.adamw_lr=0.0 is not allowed: must be > 0"),
    ("optimizer.betas=[0.9,1.0]", "optimizer.betas=[0.9, 1.0] is not allowed: two numbers in [0, 1)"),
    ("optimizer.adjust_lr_fn=moonshot", "optimizer.adjust_lr_fn: Invalid value 'moonshot'"),
])
def test_bad_muon_settings_are_one_line(override, expected, capsys, in_tmp):
    assert run_msr("train", "optimizer=muon", override) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("msr: error: ") and expected in err
    assert not (in_tmp / "outputs").exists()


def test_train_with_muon_lowers_the_loss_and_checkpoints_it(in_tmp):
    assert run_msr("train", *TINY, *TINY_MODEL["transformer"], "optimizer=muon", "trainer.max_steps=40",
                   "trainer.eval_every=40", "scheduler=constant", "scheduler.warmup_steps=0", "hydra.run.dir=run") == 0
    history = [json.loads(line) for line in (in_tmp / "run/history.jsonl").read_text().splitlines()]
    losses = [h["train/loss"] for h in history if "train/loss" in h]
    assert losses[-1] < 0.8 * losses[0]
    assert {h["lr"] for h in history if "lr" in h} == {0.02}  # Muon's lr is the logged (body's) rate
    state = torch.load(in_tmp / "run/checkpoints/last/trainer_state.pt", weights_only=True)
    assert {g["muon"] for g in state["optimizer"]["param_groups"]} == {True, False}
