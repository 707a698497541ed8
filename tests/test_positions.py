"""Transformer positions: RoPE and ALiBi against hand-computed values, caches, lengths, random ones."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import TINY, TINY_MODEL, assert_cached_decoding_equals_recomputation, read_metrics, run_msr
from msr.config import TransformerConfig
from msr.errors import UserError
from msr.data.batching import EncodedSplit
from msr.eval.decoding import reserve_positions
from msr.eval.metrics import batches, evaluate
from msr.models import build_model
from msr.models.positions import (alibi_between, alibi_bias, alibi_slopes, apply_rotary, random_position_models,
                                  random_positions, rotary_angles, rotary_frequencies, target_gap_positions)

KINDS = ["learned", "sinusoidal", "rope", "alibi", "none"]


def tiny(positions: str, **kw) -> TransformerConfig:
    return TransformerConfig(d_model=16, n_layers=2, n_heads=2, d_ff=32, max_len=12, positions=positions, **kw)


def test_rope_rotates_a_known_vector_by_position_times_frequency():
    freqs = rotary_frequencies(4)  # pairs (x0, x2) at θ=1 and (x1, x3) at θ=1/100
    assert freqs.tolist() == pytest.approx([1.0, 0.01])
    x = torch.tensor([1.0, 0.0, 0.0, 1.0]).view(1, 1, 1, 4)
    cos, sin = rotary_angles(torch.tensor([3]), freqs)
    y = apply_rotary(x, cos, sin).flatten().tolist()
    # (1, 0) turned by 3 rad; (0, 1) turned by 0.03 rad
    assert y == pytest.approx([math.cos(3), -math.sin(0.03), math.sin(3), math.cos(0.03)], abs=1e-6)


def test_rope_scores_depend_on_the_offset_only():
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)
    freqs = rotary_frequencies(8)

    def score(i, j):
        return float((apply_rotary(q, *rotary_angles(torch.tensor([i]), freqs))
                      * apply_rotary(k, *rotary_angles(torch.tensor([j]), freqs))).sum())

    assert score(5, 2) == pytest.approx(score(103, 100), abs=1e-4)
    assert score(5, 2) != pytest.approx(score(5, 3), abs=1e-3)


def test_alibi_slopes_follow_press_et_al():
    assert alibi_slopes(8).tolist() == pytest.approx([2 ** -i for i in range(1, 9)])
    assert alibi_slopes(4).tolist() == pytest.approx([2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8])
    # 6 heads: the 4-head slopes, then every other 8-head slope
    assert alibi_slopes(6).tolist() == pytest.approx([2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8, 2 ** -1, 2 ** -3])


@pytest.mark.parametrize("kind", KINDS)
def test_cached_decoding_equals_recomputation(kind):
    torch.manual_seed(0)
    assert_cached_decoding_equals_recomputation(build_model(tiny(kind), vocab_size=11).eval())


@pytest.mark.parametrize("kind", ["rope", "alibi", "none"])
def test_positions_without_a_table_run_past_max_len(kind):
    model = build_model(tiny(kind), vocab_size=11).eval()
    assert not hasattr(model, "max_len")  # decoding then sets no token budget from it
    logits, state = model(torch.zeros(1, 30, dtype=torch.long))
    logits, _ = model(torch.zeros(1, 1, dtype=torch.long), state)
    assert logits.shape == (1, 1, 11)


def test_learned_positions_refuse_past_max_len():
    with pytest.raises(ValueError, match="max_len=12"):
        build_model(tiny("learned"), vocab_size=11)(torch.zeros(1, 13, dtype=torch.long))


@pytest.mark.parametrize("kind", ["learned", "sinusoidal", "rope"])
def test_random_positions_are_drawn_in_training_from_the_global_rng(kind):
    model = build_model(tiny(kind, random_positions=True), vocab_size=11)
    tokens = torch.randint(0, 11, (4, 5), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    first, _ = model.position_ids(tokens, 0, None)
    second, _ = model.position_ids(tokens, 0, None)
    torch.manual_seed(0)
    assert torch.equal(model.position_ids(tokens, 0, None)[0], first)  # seeded: runs repeat
    assert first.shape == (4, 5) and not torch.equal(first, second)
    assert bool((first.diff(dim=1) > 0).all()) and int(first.max()) < 12
    with torch.no_grad():
        a, b = model(tokens)[0], model(tokens)[0]
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("kind", ["learned", "sinusoidal", "rope"])
def test_random_positions_at_evaluation_are_one_seeded_draw_that_leaves_the_rng_alone(kind):
    model = build_model(tiny(kind, random_positions=True), vocab_size=11).eval()
    tokens = torch.randint(0, 11, (4, 5), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    before = torch.get_rng_state()
    positions, plan = model.position_ids(tokens, 0, None)
    assert torch.equal(torch.get_rng_state(), before)  # scoring does not move training's random stream
    assert positions.shape == (4, 5) and bool((positions.diff(dim=1) > 0).all()) and int(positions.max()) < 12
    assert positions.tolist() != [list(range(5))] * 4  # drawn as in training, not in order
    assert torch.equal(model.position_ids(tokens, 0, None)[0], positions)  # the same every pass
    with torch.no_grad():
        torch.testing.assert_close(model(tokens)[0], model(tokens)[0], atol=0, rtol=0)


@pytest.mark.parametrize("kind", ["learned", "sinusoidal", "rope"])
def test_cached_decoding_with_random_positions_equals_recomputation(kind):
    torch.manual_seed(0)
    model = build_model(tiny(kind, random_positions=True), vocab_size=11).eval()
    tokens = torch.randint(0, 11, (3, 10))
    with torch.no_grad():
        full, _ = model(tokens)  # one draw for 10 positions
        with reserve_positions(model, 6):  # the prompt's draw makes room for 6 more: the same 10
            logits, state = model(tokens[:, :4])
            for t in range(4, 9):
                logits, state = model(tokens[:, t : t + 1], model.reorder_state(state, torch.arange(3)))
            logits, state = model(tokens[:, 9:], state)
            with pytest.raises(ValueError, match="positions were drawn for 10"):
                model(tokens[:, :1], state)
        assert model.decode_budget == 0  # outside the block, a pass draws for its own tokens
    torch.testing.assert_close(logits[:, -1], full[:, -1], atol=1e-5, rtol=0)


def test_log_uniform_spans_cover_dense_and_sparse_draws_in_the_expected_proportions():
    torch.manual_seed(0)
    length, limit = 10, 160
    drawn = random_positions(20000, length, limit, "cpu", log_uniform=True)
    assert bool((drawn.diff(dim=1) > 0).all()) and int(drawn.min()) >= 0 and int(drawn.max()) < limit
    # span R = length * (limit/length)**u, u uniform: P(R <= 2 * length) = log 2 / log 16 = 1/4;
    # a row's last position is below its span
    dense = (drawn[:, -1] < 2 * length).float().mean().item()
    assert 0.25 <= dense <= 0.25 + 0.1  # rows whose span is above 2 * length can still end below it
    # exactly 0..n-1 when R < length + 1: log 1.1 / log 16 = 0.034 of rows (and a few with R = 11)
    assert 0.03 <= (drawn[:, -1] == length - 1).float().mean().item() <= 0.05
    assert (drawn[:, -1] >= limit // 2).float().mean().item() > 0.15  # and some spread over the range
    fixed = random_positions(20000, length, limit, "cpu")
    assert (fixed[:, -1] < 2 * length).float().mean().item() < 0.001  # max_len: never dense


def test_log_uniform_random_positions_evaluate_and_decode_in_order():
    torch.manual_seed(0)
    drawn = build_model(tiny("rope", random_positions=True, random_range="log_uniform"), vocab_size=11)
    in_order = build_model(tiny("rope"), vocab_size=11)
    in_order.load_state_dict(drawn.state_dict())
    tokens = torch.randint(0, 11, (3, 8))
    assert not torch.equal(drawn.position_ids(tokens, 0, None)[0], torch.arange(8).expand(3, -1))  # training draws
    drawn.eval(), in_order.eval()
    assert random_position_models(drawn) == []  # nothing to reserve for decoding, no batching by length
    with torch.no_grad():
        torch.testing.assert_close(drawn(tokens)[0], in_order(tokens)[0], atol=0, rtol=0)


def test_a_random_target_gap_shifts_each_rows_target_and_nothing_else():
    sep = 2
    tokens = torch.tensor([[5, 6, sep, 7, 8, 3], [5, sep, 7, 8, 3, 0], [5, 6, 7, 8, 9, 9]])
    torch.manual_seed(0)
    drawn = torch.stack([target_gap_positions(tokens, sep, 10) for _ in range(2000)])  # [draws, B, T]
    gap = drawn[:, :, -1] - 5
    assert int(gap.min()) == 0 and int(gap.max()) == 10  # each gap in 0..10, both ends drawn
    assert (gap[:, :2] == 0).float().mean().item() == pytest.approx(1 / 11, abs=0.02)
    order = torch.arange(6)
    assert bool((drawn[:, 0, :2] == order[:2]).all()) and bool((drawn[:, 1, :1] == order[:1]).all())  # inputs in order
    assert bool((drawn[:, 0, 2:] == order[2:] + gap[:, :1]).all())  # the <sep> and the target: one shift
    assert bool((drawn[:, 1, 1:] == order[1:] + gap[:, 1:2]).all())
    assert bool((drawn[:, 2] == order).all())  # no <sep>: nothing to shift

    model = build_model(tiny("rope", random_target_gap=10), vocab_size=11)
    model.set_attention("causal", sep)
    assert not torch.equal(model.position_ids(tokens, 0, None)[0], order.expand(3, -1))  # training shifts
    model.eval()
    assert torch.equal(model.position_ids(tokens, 0, None)[0], order) and random_position_models(model) == []


def test_alibi_over_shifted_positions_penalises_the_distance_with_the_gap():
    slopes = torch.tensor([0.5, 0.25])
    positions = torch.tensor([[0, 1, 2, 13, 14]])  # <sep> at index 2, the target shifted by a gap of 10
    bias = alibi_between(slopes, positions, None, torch.float32)
    assert bias.shape == (1, 2, 5, 5)
    assert bias[0, 0, 3].tolist() == [-6.5, -6.0, -5.5, 0.0, float("-inf")]  # 0.5 × (13, 12, 11, 0)
    assert bias[0, 1, 4, 3].item() == -0.25 and bias[0, 1, 1, 0].item() == -0.25  # within a part: exact
    # in order, it is the bias the cache continues; under a prefix mask, the distance both ways
    torch.testing.assert_close(alibi_between(slopes, torch.arange(5), None, torch.float32),
                               alibi_bias(slopes, 0, 5, torch.float32)[None], rtol=0, atol=0)
    visible = torch.ones(1, 1, 3, 3, dtype=torch.bool)
    assert alibi_between(slopes, torch.arange(3), visible, torch.float32)[0, 0, 0].tolist() == [0.0, -0.5, -1.0]


@pytest.mark.parametrize("kw, key", [
    ({"positions": "rope", "d_model": 15, "n_heads": 3}, "model.positions"),
    ({"positions": "learned", "random_target_gap": 8}, "model.random_target_gap"),
    ({"positions": "rope", "random_positions": True, "random_target_gap": 8}, "model.random_target_gap"),
    ({"positions": "rope", "random_target_gap": -1}, "model.random_target_gap"),
    ({"positions": "alibi", "random_positions": True}, "model.random_positions"),
    ({"positions": "rope", "random_range": "log_uniform"}, "model.random_range"),
])
def test_bad_position_settings_are_refused_in_one_line(kw, key):
    with pytest.raises(UserError, match=key) as err:
        TransformerConfig(**kw).validate("model.")
    assert "\n" not in str(err.value)


def test_attention_on_the_transformer_is_refused_in_one_line(capsys):
    assert run_msr("train", "model=transformer", "model.attention=dot") == 2
    err = capsys.readouterr().err
    assert err.startswith("msr: error: model.attention: no such key") and err.count("\n") == 1


def test_a_rope_transformer_trains_and_evaluates(in_tmp):
    run = in_tmp / "run"
    assert run_msr("train", *TINY, *TINY_MODEL["transformer"], "model.positions=rope",
                   "model.random_positions=true", "trainer.max_steps=6", f"hydra.run.dir={run}") == 0
    assert read_metrics(run)["status"] == "completed"
    assert run_msr("evaluate", f"run={run}", "hydra.run.dir=eval") == 0
    assert read_metrics(in_tmp / "eval")["status"] == "completed"


@pytest.mark.parametrize("kind", ["rope", "alibi"])
def test_a_random_target_gap_takes_effect_in_training_only(in_tmp, kind):
    """msr train hands the model its <sep> id (the gap would fail without it); the same seed with
    and without the gap trains differently, and the gap run's test is scored in order."""
    common = [*TINY, *TINY_MODEL["transformer"], f"model.positions={kind}", "trainer.max_steps=6"]
    assert run_msr("train", *common, "model.random_target_gap=32", "hydra.run.dir=gap") == 0
    assert run_msr("train", *common, "hydra.run.dir=plain") == 0
    gap, plain = (read_metrics(in_tmp / name)["metrics"] for name in ("gap", "plain"))
    assert gap["val/loss"] != plain["val/loss"]
    assert run_msr("evaluate", "run=gap", "hydra.run.dir=eval") == 0
    assert read_metrics(in_tmp / "eval")["metrics"]["test/loss"] == pytest.approx(gap["test/loss"], rel=1e-6)
    # fine-tuning trains with the gap again, so it hands the model its <sep> too
    assert run_msr("finetune", "init=gap", *TINY, "trainer.max_steps=3", "hydra.run.dir=ft") == 0
    assert read_metrics(in_tmp / "ft")["status"] == "completed"


def test_rope_trains_on_sequences_longer_than_max_len_which_learned_positions_refuse(in_tmp, capsys):
    short = [*TINY, *TINY_MODEL["transformer"], "model.max_len=8"]
    assert run_msr("train", *short, "model.positions=learned", f"hydra.run.dir={in_tmp / 'a'}") == 2
    assert "model.max_len=8 is shorter than some sequences" in capsys.readouterr().err
    assert run_msr("train", *short, "model.positions=rope", f"hydra.run.dir={in_tmp / 'b'}") == 0


def split_of(rows: list[list[int]]) -> EncodedSplit:
    """Rows right-padded with 0; every token after the first is a target."""
    width = max(map(len, rows))
    inputs = torch.tensor([r + [0] * (width - len(r)) for r in rows])
    labels = torch.tensor([r[1:] + [-100] * (width - len(r) + 1) for r in rows])
    return EncodedSplit(inputs, labels, torch.tensor([len(r) for r in rows]), torch.full((len(rows),), -1), 0)


def test_with_random_positions_a_row_scores_the_same_in_any_company():
    # a short row batched with long ones would get its positions drawn over the long length
    torch.manual_seed(0)
    model = build_model(tiny("rope", random_positions=True), vocab_size=11)
    g = torch.Generator().manual_seed(2)
    rows = [torch.randint(1, 11, (n,), generator=g).tolist() for n in (4, 11, 6, 4, 11)]
    together = evaluate(model, split_of(rows), batch_size=8)["logprobs"]
    alone = torch.cat([evaluate(model, split_of([r]), batch_size=8)["logprobs"] for r in rows])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)
    assert batches(torch.tensor([4, 11, 6, 4, 11]), 8, one_length=True)[0].tolist() == [0, 3]
    assert [b.tolist() for b in batches(torch.tensor([4, 11, 6, 4, 11]), 2, one_length=False)] == \
        [[0, 1], [2, 3], [4]]  # other models: in order
