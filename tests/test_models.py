"""Models: one interface, incremental decoding equal to a full pass, tied weights."""

from __future__ import annotations

import pytest
import torch

from msr.config import RecurrentConfig, TransformerConfig
from msr.models import build_model, count_parameters

CONFIGS = {
    "rnn": RecurrentConfig(name="rnn", embedding_size=16, hidden_size=24, num_layers=2),
    "lstm": RecurrentConfig(name="lstm", embedding_size=16, hidden_size=24, num_layers=2),
    "gru": RecurrentConfig(name="gru", embedding_size=16, hidden_size=24, num_layers=2),
    "transformer": TransformerConfig(d_model=32, n_layers=2, n_heads=4, d_ff=64, max_len=32),
    "transformer-sinusoidal": TransformerConfig(d_model=32, n_layers=2, n_heads=4, d_ff=64, max_len=32,
                                                positions="sinusoidal"),
    "transformer-shared": TransformerConfig(d_model=32, n_layers=3, n_heads=4, d_ff=64, max_len=32,
                                            share_layers=True),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_token_by_token_decoding_matches_the_full_pass(name):
    torch.manual_seed(0)
    model = build_model(CONFIGS[name], vocab_size=17).eval()
    tokens = torch.randint(0, 17, (3, 11))
    with torch.no_grad():
        full, _ = model(tokens)
        state, steps = None, []
        for t in range(tokens.shape[1]):
            logits, state = model(tokens[:, t : t + 1], state)
            steps.append(logits)
        # a prompt in one call, then the rest in a second chunk
        head, state = model(tokens[:, :5])
        tail, _ = model(tokens[:, 5:], state)
    assert full.shape == (3, 11, 17)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.cat([head, tail], dim=1), full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["lstm", "transformer"])
def test_causality_future_tokens_do_not_change_past_logits(name):
    torch.manual_seed(0)
    model = build_model(CONFIGS[name], vocab_size=17).eval()
    a = torch.randint(0, 17, (1, 10))
    b = a.clone()
    b[0, 6:] = (b[0, 6:] + 1) % 17
    with torch.no_grad():
        torch.testing.assert_close(model(a)[0][:, :6], model(b)[0][:, :6])


def test_tied_embeddings_share_one_matrix():
    cfg = RecurrentConfig(name="lstm", embedding_size=24, hidden_size=24, tie_embeddings=True)
    model = build_model(cfg, vocab_size=17)
    assert model.head.weight is model.embed.weight
    untied = build_model(RecurrentConfig(name="lstm", embedding_size=24, hidden_size=24), vocab_size=17)
    assert count_parameters(untied) - count_parameters(model) == 17 * 24


def test_lstm_parameter_count_matches_the_formula():
    cfg = RecurrentConfig(name="lstm", embedding_size=8, hidden_size=10, num_layers=1)
    # embedding + LSTM (4 gates: W_ih, W_hh, two biases) + output layer with bias
    expected = 17 * 8 + 4 * (10 * 8 + 10 * 10 + 2 * 10) + (10 * 17 + 17)
    assert count_parameters(build_model(cfg, vocab_size=17)) == expected


def test_transformer_refuses_sequences_longer_than_max_len():
    model = build_model(CONFIGS["transformer"], vocab_size=17)
    with pytest.raises(ValueError, match="max_len=32"):
        model(torch.zeros(1, 33, dtype=torch.long))


def test_shared_layers_hold_one_block_and_round_trip(tmp_path):
    from safetensors.torch import load_model, save_model

    shared = build_model(CONFIGS["transformer-shared"], vocab_size=17)
    one_layer = build_model(TransformerConfig(d_model=32, n_layers=1, n_heads=4, d_ff=64, max_len=32), 17)
    assert count_parameters(shared) == count_parameters(one_layer)
    assert shared.blocks[0] is shared.blocks[2]
    save_model(shared, str(tmp_path / "model.safetensors"))
    restored = build_model(CONFIGS["transformer-shared"], vocab_size=17)
    load_model(restored, str(tmp_path / "model.safetensors"))
    x = torch.randint(0, 17, (2, 7))
    torch.testing.assert_close(restored(x)[0], shared(x)[0], rtol=0, atol=0)
