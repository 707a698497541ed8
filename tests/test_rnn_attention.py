"""Recurrent models with attention: incremental decoding equal to the full pass, beams, a run."""

from __future__ import annotations

import pytest
import torch

from conftest import TINY, TINY_MODEL, assert_cached_decoding_equals_recomputation, read_metrics, run_msr
from msr.config import RecurrentConfig
from msr.errors import UserError
from msr.models import build_model

CASES = [(cell, kind, False) for cell in ("rnn", "lstm", "gru") for kind in ("dot", "additive")]
CASES += [("lstm", "dot", True), ("gru", "additive", True)]


@pytest.mark.parametrize("cell, kind, feeding", CASES)
def test_cached_decoding_equals_recomputation(cell, kind, feeding):
    torch.manual_seed(0)
    cfg = RecurrentConfig(name=cell, embedding_size=8, hidden_size=12, num_layers=2, attention=kind,
                          input_feeding=feeding)
    assert_cached_decoding_equals_recomputation(build_model(cfg, vocab_size=11).eval())


def test_attention_changes_the_output_and_is_causal():
    torch.manual_seed(0)
    model = build_model(RecurrentConfig(name="gru", embedding_size=8, hidden_size=12, attention="dot"), 11).eval()
    a = torch.randint(0, 11, (1, 8))
    b = a.clone()
    b[0, 5:] = (b[0, 5:] + 1) % 11
    with torch.no_grad():
        torch.testing.assert_close(model(a)[0][:, :5], model(b)[0][:, :5])


def test_input_feeding_without_attention_is_refused():
    with pytest.raises(UserError, match="model.input_feeding"):
        RecurrentConfig(name="lstm", input_feeding=True).validate("model.")


def test_an_attention_gru_trains_and_evaluates(in_tmp):
    run = in_tmp / "run"
    assert run_msr("train", *TINY, *TINY_MODEL["gru"], "model.attention=dot", "trainer.max_steps=6",
                   f"hydra.run.dir={run}") == 0
    assert read_metrics(run)["status"] == "completed"
    assert run_msr("evaluate", f"run={run}", "hydra.run.dir=eval") == 0
    assert read_metrics(in_tmp / "eval")["status"] == "completed"
