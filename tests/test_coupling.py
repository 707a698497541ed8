"""Position coupling (Cho et al., 2024): model.coupling_tokens gives the k-th step of the input and
the k-th step of the target one learned index, so a step finds what it reads at any length."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import TINY, assert_cached_decoding_equals_recomputation, read_metrics, run_msr
from msr.config import TransformerConfig
from msr.models import build_model
from msr.models.positions import coupled_positions, coupling_offsets

SEP, MARKERS = 2, (5, 7)


def tiny(**kw) -> TransformerConfig:
    return TransformerConfig(d_model=16, n_layers=2, n_heads=2, d_ff=32, max_len=32, positions="alibi",
                             coupling_tokens=["+", "*"], **kw)


def test_each_marker_starts_the_next_index_counted_afresh_after_sep():
    # "7 + 5 * 3 = <sep> 7 , + 5 2 , * 3 6 , = <eos>" with + = 5, * = 7, <sep> = 2, others 9
    tokens = torch.tensor([[9, 5, 9, 7, 9, 9, 2, 9, 9, 5, 9, 9, 9, 7, 9, 9, 9, 9]])
    expected = [[0, 1, 1, 2, 2, 2, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2]]
    indices, counts = coupled_positions(tokens, torch.tensor(MARKERS), SEP)
    assert indices.tolist() == expected
    assert counts.tolist() == [[4, 2]]  # four markers in all, two of them before the last <sep>


def test_the_counts_carry_a_sequence_on_in_pieces_of_any_size():
    torch.manual_seed(0)
    tokens = torch.randint(0, 10, (4, 25))
    whole, _ = coupled_positions(tokens, torch.tensor(MARKERS), SEP)
    for cut in (1, 6, 13, 24):
        first, counts = coupled_positions(tokens[:, :cut], torch.tensor(MARKERS), SEP)
        rest, _ = coupled_positions(tokens[:, cut:], torch.tensor(MARKERS), SEP, counts)
        assert torch.equal(torch.cat([first, rest], dim=1), whole)


def test_training_offsets_reach_every_row_and_stay_inside_the_table():
    indices = torch.tensor([[0, 1, 2, 3, 4]] * 4000)
    shifted = indices + coupling_offsets(indices, 10, torch.Generator().manual_seed(0))
    assert shifted.max() == 9 and shifted.min() == 0  # rows 0..9 are all trained
    starts = torch.bincount(shifted[:, 0], minlength=6)
    assert starts[6:].sum() == 0 and (starts[:6] > 4000 / 6 * 0.8).all()  # starts 0..5, uniform


def test_cached_decoding_with_coupling_equals_recomputation():
    torch.manual_seed(0)
    model = build_model(tiny(), 11, sep_id=SEP, coupling_ids=MARKERS).eval()
    assert_cached_decoding_equals_recomputation(model, vocab_size=11, length=14)


def test_the_table_is_added_to_the_embeddings_and_evaluation_starts_at_row_0():
    torch.manual_seed(0)
    plain = build_model(TransformerConfig(d_model=16, n_layers=2, n_heads=2, d_ff=32, max_len=32,
                                          positions="alibi"), 11).eval()
    coupled = build_model(tiny(), 11, sep_id=SEP, coupling_ids=MARKERS).eval()
    coupled.load_state_dict(plain.state_dict(), strict=False)
    tokens = torch.tensor([[9, 5, 9, 7, 9, 2, 9, 5, 9, 7]])
    with torch.no_grad():
        coupled.coupling.weight.zero_()
        torch.testing.assert_close(coupled(tokens)[0], plain(tokens)[0])  # an all-zero table adds nothing
        coupled.coupling.weight[3:].normal_()  # rows 0..2 stay zero, and evaluation uses only those
        torch.testing.assert_close(coupled(tokens)[0], plain(tokens)[0])
        coupled.coupling.weight[1].normal_()
        assert not torch.allclose(coupled(tokens)[0], plain(tokens)[0])
        coupled.train()
        coupled.coupling.weight.normal_()
        drawn = [coupled(tokens)[0] for _ in range(2)]  # training starts at a random row
        assert not torch.allclose(*drawn)


def test_more_steps_than_the_table_has_rows_fail_with_the_key_to_raise():
    model = build_model(tiny(coupling_range=3), 11, sep_id=SEP, coupling_ids=MARKERS).eval()
    with pytest.raises(ValueError, match="model.coupling_range=3"):
        model(torch.tensor([[5, 7, 5, 9]]))


def test_a_coupled_run_trains_saves_and_evaluates_with_its_coupling(in_tmp):
    tokens = "model.coupling_tokens=[+,-,*]"
    assert run_msr("train", *TINY, "model=transformer", "model.d_model=16", "model.n_heads=2", "model.d_ff=32",
                   "model.positions=alibi", "data=arith", "data.scratchpad=true", "data.scratchpad_operands=true",
                   tokens, "trainer.max_steps=6", "data.test.size=12", "hydra.run.dir=run") == 0
    meta = json.loads(next(in_tmp.glob("run/checkpoints/*/meta.json")).read_text())
    assert meta["model"]["coupling_tokens"] == ["+", "-", "*"]
    assert run_msr("evaluate", "run=run", "hydra.run.dir=again") == 0
    # the evaluation rebuilt the same model: the same token ids start the coupled indices
    evaluated, trained = read_metrics(in_tmp / "again")["metrics"], read_metrics(in_tmp / "run")["metrics"]
    assert evaluated["test/loss"] == pytest.approx(trained["test/loss"], abs=1e-4)


def test_a_coupling_token_outside_the_vocabulary_is_refused_in_one_line(in_tmp, capsys):
    assert run_msr("train", *TINY, "model=transformer", "data=arith", "model.coupling_tokens=[+,@]",
                   "hydra.run.dir=run") == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the data's log lines
    assert error.startswith("msr: error: model.coupling_tokens") and "@" in error
    assert not (in_tmp / "run" / "checkpoints").exists()


def test_a_coupling_range_of_zero_is_refused_in_one_line(capsys):
    assert run_msr("train", "model=transformer", "model.coupling_range=0") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "model.coupling_range" in err
