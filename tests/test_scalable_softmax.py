"""model.softmax=scalable (SSMax, Nakanishi 2025): logits times s·log(n), n the keys a query sees."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY, run_msr
from msr.config import TransformerConfig
from msr.models import build_model
from msr.models.masks import visible_keys
from msr.models.positions import alibi_bias, alibi_slopes
from msr.models.transformer import SCALABLE_INIT, SelfAttention


def tiny(positions: str, **kw) -> TransformerConfig:
    return TransformerConfig(d_model=16, n_layers=2, n_heads=2, d_ff=32, max_len=12, positions=positions,
                             softmax="scalable", **kw)


def reference(attn: SelfAttention, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Attention written out: softmax((q·k/sqrt(d) + bias) · s·log(n)) per head, n = the keys
    with a finite bias."""
    B, T, C = x.shape
    H = attn.n_heads
    q, k, v = attn.qkv(x).view(B, T, 3, H, C // H).permute(2, 0, 3, 1, 4)
    visible = torch.isfinite(bias)
    n = visible.sum(-1, keepdim=True).float()
    logits = (q @ k.transpose(-1, -2) / math.sqrt(C // H) + bias) * attn.length_scale.view(1, H, 1, 1) * n.log()
    weights = torch.softmax(logits.masked_fill(~visible, float("-inf")), dim=-1)
    return attn.proj((weights @ v).transpose(1, 2).reshape(B, T, C))


@pytest.mark.parametrize("mask", ["causal", "alibi", "bidirectional"])
def test_scalable_softmax_matches_the_written_out_formula(mask):
    torch.manual_seed(0)
    attn = SelfAttention(16, 2, 0.0, scalable=True).eval()
    with torch.no_grad():
        attn.length_scale.copy_(torch.tensor([0.3, 1.7]))  # two heads, two different s
    x = torch.randn(2, 7, 16)
    causal = torch.zeros(7, 7).masked_fill(torch.ones(7, 7, dtype=torch.bool).triu(1), float("-inf"))
    if mask == "causal":
        given, bias = None, causal
    elif mask == "alibi":
        given = bias = alibi_bias(alibi_slopes(2), 0, 7, x.dtype)
    else:
        given, bias = visible_keys("bidirectional", x[..., 0].long(), None, 0), torch.zeros(7, 7)
    with torch.no_grad():
        out, _ = attn(x, bias=given)
        torch.testing.assert_close(out, reference(attn, x, bias), atol=1e-5, rtol=0)


def test_the_first_query_sees_one_key_and_later_ones_sharpen_with_length():
    """n = 1: log 1 = 0, the lone key gets all the weight (no NaN from -inf · 0); a query that sees
    more keys has its logits scaled by more."""
    torch.manual_seed(0)
    attn = SelfAttention(16, 2, 0.0, scalable=True).eval()
    x = torch.randn(1, 5, 16)
    with torch.no_grad():
        out, _ = attn(x, bias=alibi_bias(alibi_slopes(2), 0, 5, x.dtype))
    assert torch.isfinite(out).all()
    v = attn.qkv(x)[..., 32:]  # the first position's output is its own value, projected
    torch.testing.assert_close(out[0, 0], attn.proj(v[0, 0]), atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", ["learned", "rope", "alibi", "none"])
def test_cached_decoding_with_scalable_softmax_equals_recomputation(kind):
    torch.manual_seed(0)
    model = build_model(tiny(kind), vocab_size=11).eval()
    with torch.no_grad():
        for block in model.blocks:
            block.attn.length_scale.uniform_(0.2, 1.5)
    tokens = torch.randint(0, 11, (3, 10))
    with torch.no_grad():
        full, _ = model(tokens)
        logits, state = model(tokens[:, :4])
        for t in range(4, 10):
            logits, state = model(tokens[:, t : t + 1], state)
        head, state = model(tokens[:, :6])
        tail, _ = model(tokens[:, 6:], state)
    torch.testing.assert_close(logits[:, -1], full[:, -1], atol=1e-5, rtol=0)
    torch.testing.assert_close(tail, full[:, 6:], atol=1e-5, rtol=0)


def test_standard_softmax_has_no_scale_and_scalable_learns_one_per_head(in_tmp):
    assert build_model(TransformerConfig(d_model=16, n_heads=2, d_ff=32), vocab_size=11).blocks[0].attn.length_scale is None
    assert run_msr("train", *TINY, "model=transformer", "model.d_model=16", "model.n_heads=2", "model.d_ff=32",
                   "model.positions=alibi", "model.softmax=scalable", "hydra.run.dir=run") == 0
    weights = load_file("run/checkpoints/last/model.safetensors")
    scales = [w for name, w in weights.items() if name.endswith("length_scale")]
    assert len(scales) == 3 and all(s.shape == (2,) for s in scales)  # one s per head, in every layer
    assert any(not torch.allclose(s, torch.full((2,), SCALABLE_INIT)) for s in scales)  # trained


def test_an_unknown_softmax_is_refused_in_one_line(capsys):
    assert run_msr("train", "model=transformer", "model.softmax=sparse") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "model.softmax" in err and "scalable" in err
