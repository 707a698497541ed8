"""`msr compress run=RUN`: pruning reaches the asked sparsity exactly and its zeros survive the
fine-tune and the checkpoint; int8 models stay close to fp32, in safetensors; evaluate and generate
read a compressed run; bad input is one line before any work."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
import torch
from conftest import TINY, TINY_MODEL, read_metrics, run_msr
from safetensors.torch import load_file

from msr.compress.prune import make_permanent, prunable, prune_model, zeros_of
from msr.compress.quantize import plan, quantize
from msr.config import RecurrentConfig, TransformerConfig
from msr.data.tokenizer import TextTokenizer
from msr.eval.inference import load_checkpoint
from msr.models import build_model
from msr.train.checkpoint import save_checkpoint

LSTM = RecurrentConfig(name="lstm", embedding_size=16, hidden_size=32, num_layers=2)
MODELS = {"lstm": LSTM, "gru": RecurrentConfig(name="gru", embedding_size=16, hidden_size=32, attention="dot"),
          "rnn": RecurrentConfig(name="rnn", embedding_size=16, hidden_size=32),
          "transformer": TransformerConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, max_len=32)}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny LSTM run on arith (the fixture recipe of test_evaluate.py)."""
    folder = tmp_path_factory.mktemp("trained") / "run"
    assert run_msr("train", *TINY, *TINY_MODEL["lstm"], "trainer.max_steps=40", f"hydra.run.dir={folder}") == 0
    return folder


@pytest.fixture(scope="module")
def int8_run(trained):
    """The trained run, a quarter of each matrix pruned, then int8."""
    folder = trained.parent / "int8"
    assert run_msr("compress", f"run={trained}", "compress.quantize=int8", "compress.prune=0.25",
                   "compress.prune_scope=layer", f"hydra.run.dir={folder}") == 0
    return folder


def fresh(name: str, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(MODELS[name], 20).eval()


def magnitudes(model) -> list[torch.Tensor]:
    return [getattr(module, name).detach().abs().flatten() for module, name in prunable(model)]


def test_global_pruning_zeroes_exactly_the_smallest_share_of_all_matrices():
    model = fresh("lstm")
    before = torch.cat(magnitudes(model))
    prune_model(model, 0.3, "global")
    zeros, entries = zeros_of(model)
    assert entries == before.numel() and zeros == round(0.3 * entries)
    # the zeros are the 30% smallest |w| over all matrices together: one threshold
    threshold = before.sort().values[zeros - 1]
    assert all(torch.equal(w == 0, w0 <= threshold) for w, w0 in zip(magnitudes(model), magnitudes(fresh("lstm"))))


def test_layer_pruning_zeroes_the_same_share_of_each_matrix_and_spares_a_tied_head():
    model = fresh("transformer")
    sizes = [w.numel() for w in magnitudes(model)]
    prune_model(model, 0.3, "layer")
    assert [int((w == 0).sum()) for w in magnitudes(model)] == [round(0.3 * n) for n in sizes]
    assert not any(module is model.head for module, _ in prunable(model))  # one tensor with the embedding
    make_permanent(model)
    assert set(model.state_dict()) == set(fresh("transformer").state_dict())  # plain weights again


def test_unit_pruning_silences_whole_hidden_units_and_heads():
    model, tokens = fresh("lstm"), torch.randint(4, 20, (3, 9))
    prune_model(model, 0.25, "units")
    states = model.embed(tokens)
    for layer in range(2):  # each layer's own units: exactly round(0.25 * 32) = 8 are 0 at every step
        single = torch.nn.LSTM(16 if layer == 0 else 32, 32, batch_first=True)
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(single, f"{name}_l0").data = getattr(model.rnn, f"{name}_l{layer}").detach().clone()
        states, _ = single(states)
        assert int((states.abs().amax(dim=(0, 1)) == 0).sum()) == 8
    transformer = fresh("transformer")
    prune_model(transformer, 0.5, "units")
    for block in transformer.blocks:  # 1 of 2 heads: its query, key and value rows and proj columns
        rows = block.attn.qkv.weight.view(3, 2, 16, 32).abs().sum(dim=(0, 2, 3))
        assert int((rows == 0).sum()) == 1 and int((block.attn.proj.weight.view(32, 2, 16).abs().sum(dim=(0, 2))
                                                   == 0).sum()) == 1
    make_permanent(transformer)


@pytest.mark.parametrize("name", MODELS)
def test_int8_outputs_stay_close_to_fp32_and_reload_from_safetensors(name, tmp_path):
    model, tokens = fresh(name), torch.randint(4, 20, (4, 12))
    with torch.no_grad():
        reference, _ = model(tokens)
    layers, float_layers = plan(model)
    assert float_layers == (["rnn"] if name == "rnn" else [])  # torch.ao has no int8 nn.RNN
    quantized = quantize(model, layers)
    with torch.no_grad():
        int8, _ = quantized(tokens)
    assert (int8 - reference).abs().max() < 0.05 * reference.abs().max()
    assert (int8.argmax(-1) == reference.argmax(-1)).float().mean() > 0.9

    tokenizer = TextTokenizer.build(["a b c d e f g h i j k l m n o p"], "word")
    meta = {"model": asdict(MODELS[name]), "vocab_size": 20, "quantized": {"layers": layers}}
    save_checkpoint(tmp_path / "ck", quantized, tokenizer, meta)
    stored = load_file(tmp_path / "ck/model.safetensors")
    assert all(stored[f"{layer}.{'weight_ih_l0' if layer == 'rnn' else 'weight'}.int8"].dtype == torch.int8
               for layer in layers)  # int8 entries in safetensors: no pickle
    loaded, _, _ = load_checkpoint(tmp_path / "ck", "cpu")
    with torch.no_grad():
        again, _ = loaded(tokens)
    assert torch.allclose(again, int8, atol=1e-4)  # the scales are stored as float32


@pytest.mark.slow  # an end-to-end run; CI runs it
def test_pruning_survives_fine_tuning_and_the_checkpoint(trained, in_tmp):
    assert run_msr("compress", f"run={trained}", "compress.prune=0.5", "compress.finetune_steps=10",
                   "trainer.eval_every=5", "trainer.batch_size=16", "hydra.run.dir=c") == 0
    record = read_metrics(in_tmp / "c")
    source, _, _ = load_checkpoint(trained / "checkpoints/best", "cpu")
    compressed, _, _ = load_checkpoint(in_tmp / "c/checkpoints/best", "cpu")
    prune_model(source, 0.5, "global")  # the masks the fine-tune started from
    masks = [getattr(module, name) == 0 for module, name in prunable(source)]
    weights = [getattr(module, name) for module, name in prunable(compressed)]
    entries = sum(m.numel() for m in masks)
    assert sum(int(m.sum()) for m in masks) == round(0.5 * entries)
    assert all(torch.equal(w == 0, m) for w, m in zip(weights, masks))  # the same zeros, no others
    kept = [getattr(module, name)[~m] for (module, name), m in zip(prunable(source), masks)]
    assert not all(torch.equal(w[~m], k) for w, m, k in zip(weights, masks, kept))  # the rest trained
    assert record["before"]["parameters"] == record["after"]["parameters"]
    assert record["after"]["nonzero_parameters"] == record["before"]["nonzero_parameters"] - round(0.5 * entries)
    assert record["compress"]["pruned_fraction"] == round(0.5 * entries) / entries
    history = [json.loads(line) for line in (in_tmp / "c/history.jsonl").read_text().splitlines()]
    assert max(h["step"] for h in history) == 10
    assert json.loads((in_tmp / "c/checkpoints/best/meta.json").read_text())["compressed"]["prune"] == 0.5


def test_evaluate_and_generate_read_an_int8_run(trained, int8_run, in_tmp):
    record = read_metrics(int8_run)
    assert record["compress"]["quantized"]["layers"] == ["rnn", "head"]
    assert record["after"]["size_bytes"] < 0.5 * record["before"]["size_bytes"]
    assert record["compress"]["size_ratio"] == pytest.approx(record["after"]["size_bytes"] /
                                                             record["before"]["size_bytes"], abs=1e-4)
    assert record["before"]["test/accuracy"] == read_metrics(trained)["metrics"]["test/accuracy"]
    assert record["after"]["cpu_tokens_per_second"] > 0 and record["tokens_per_second"] > 0
    assert run_msr("evaluate", f"run={int8_run}", "device=cpu", "hydra.run.dir=ev") == 0
    assert read_metrics(in_tmp / "ev")["metrics"]["test/accuracy"] == record["metrics"]["test/accuracy"]
    assert run_msr("generate", f"run={int8_run}", "prompt=1 + 2 =", "device=cpu", "hydra.run.dir=gen") == 0
    generation = json.loads((in_tmp / "gen/generations.jsonl").read_text())
    assert generation["prompt"] == "1 + 2 =" and generation["generation"] is not None


@pytest.mark.parametrize("overrides, expected", [
    (["compress.prune=1.0"], "compress.prune=1.0 is not allowed: must be in [0, 1)"),
    (["compress.prune=-0.1"], "compress.prune=-0.1 is not allowed: must be in [0, 1)"),
    ([], "nothing to do"),
    (["compress.prune=0.5", "compress.prune_scope=row"], "compress.prune_scope='row' is not allowed: one of global"),
    (["compress.finetune_steps=5"], "give compress.prune too"),
])
def test_bad_options_are_one_line_before_any_work(trained, overrides, expected, in_tmp, capsys):
    assert run_msr("compress", f"run={trained}", *overrides, "hydra.run.dir=c") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("msr: error: ") and expected in err, err
    assert not (in_tmp / "c").exists()


def test_a_run_without_checkpoints_or_already_int8_is_refused(int8_run, in_tmp, capsys):
    (in_tmp / "empty").mkdir()
    assert run_msr("compress", "run=empty", "compress.quantize=int8", "hydra.run.dir=c") == 2
    assert "has no checkpoints/best/model.safetensors" in capsys.readouterr().err
    assert run_msr("compress", f"run={int8_run}", "compress.prune=0.5", "hydra.run.dir=c") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is already int8 (layers rnn, head)" in err, err
    assert not (in_tmp / "c").exists()
