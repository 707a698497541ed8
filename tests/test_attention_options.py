"""The Transformer's attention options: model.softmax=scalable (SSMax, Nakanishi 2025: logits
times s·log(n), n the keys a query sees) and model.qkv_conv (Primer's depthwise convolution)."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY, assert_cached_decoding_equals_recomputation, run_msr
from msr.config import TransformerConfig
from msr.models import build_model
from msr.models.masks import visible_keys
from msr.models.positions import alibi_bias, alibi_slopes
from msr.models.transformer import SCALABLE_INIT, SelfAttention


def tiny(positions: str, **kw) -> TransformerConfig:
    return TransformerConfig(d_model=16, n_layers=2, n_heads=2, d_ff=32, max_len=12, positions=positions, **kw)


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


OPTIONS = [{"softmax": "scalable"}, {"qkv_conv": 3}, {"softmax": "scalable", "qkv_conv": 2}]


@pytest.mark.parametrize("kind", ["learned", "rope", "alibi", "none"])
@pytest.mark.parametrize("options", OPTIONS)
def test_cached_decoding_with_attention_options_equals_recomputation(kind, options):
    torch.manual_seed(0)
    model = build_model(tiny(kind, **options), vocab_size=11).eval()
    with torch.no_grad():  # away from the starting values (s = 1/ln 32, the identity convolution)
        for block in model.blocks:
            for name, p in block.attn.named_parameters():
                if name in ("length_scale", "conv.weight"):
                    p.uniform_(0.2, 1.5)
    assert_cached_decoding_equals_recomputation(model)


def test_standard_softmax_has_no_scale_and_scalable_learns_one_per_head(in_tmp):
    assert build_model(tiny("alibi"), vocab_size=11).blocks[0].attn.length_scale is None
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


def test_qkv_conv_mixes_each_channel_over_the_last_positions_only():
    torch.manual_seed(0)
    attn = SelfAttention(8, 2, 0.0, qkv_conv=3).eval()
    with torch.no_grad():
        attn.conv.weight.uniform_(-1, 1)
    x = torch.randn(2, 6, 8)
    raw = attn.qkv(x)  # [B, T, 3C]
    w = attn.conv.weight[:, 0]  # [3C, 3]: oldest tap first
    padded = torch.cat([torch.zeros(2, 2, 24), raw], dim=1)
    expected = sum(padded[:, j : j + 6] * w[:, j] for j in range(3))  # zeros before the first token
    got, recent = attn.convolved(raw, None)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(recent, raw[:, -2:], atol=0, rtol=0)  # what the next token needs


def test_qkv_conv_starts_as_the_plain_transformer_and_trains_away_from_it(in_tmp):
    torch.manual_seed(0)
    plain = build_model(tiny("alibi"), vocab_size=11).eval()
    conv = build_model(tiny("alibi", qkv_conv=3), vocab_size=11).eval()
    conv.load_state_dict(plain.state_dict(), strict=False)
    tokens = torch.randint(0, 11, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(conv(tokens)[0], plain(tokens)[0], atol=1e-6, rtol=0)
    assert run_msr("train", *TINY, "model=transformer", "model.d_model=16", "model.n_heads=2", "model.d_ff=32",
                   "model.positions=alibi", "model.qkv_conv=3", "hydra.run.dir=run") == 0
    kernels = [w for name, w in load_file("run/checkpoints/last/model.safetensors").items()
               if name.endswith("conv.weight")]
    assert len(kernels) == 3 and kernels[0].shape == (48, 1, 3)
    assert any(k[:, 0, :2].abs().max() > 0 for k in kernels)  # the older taps learned something


def test_a_negative_qkv_conv_is_refused_in_one_line(capsys):
    assert run_msr("train", "model=transformer", "model.qkv_conv=-1") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "model.qkv_conv" in err
