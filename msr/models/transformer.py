"""A pre-LayerNorm decoder-only Transformer (GPT-2 style) on scaled_dot_product_attention.

`state` is (the KV cache, the positions drawn, the coupling counts): one (keys, values) pair per
layer, each [B, heads, T_past, head_dim] (with model.qkv_conv also the last raw q, k, v rows);
with random positions the [B, n] positions planned for the sequence; with position coupling the
[B, 2] marker counts (msr/models/positions.py); else None. Passing it back
continues the sequence where it stopped, so decoding costs one token per call.
Keys are cached after their rotation (rope), so a cached step rotates only the new token's q, k.
Attention is causal unless set_attention makes it bidirectional (masked-LM pretraining) or a
prefix LM's (msr/models/masks.py).
The position options (model.positions) are in msr/models/positions.py.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from msr.models.masks import MODES, visible_keys
from msr.models.positions import (alibi_between, alibi_bias, alibi_slopes, apply_rotary, coupled_positions,
                                  coupling_offsets, random_positions, rotary_angles, rotary_frequencies,
                                  sinusoidal_table, target_gap_positions)

TABLES = ("learned", "sinusoidal")  # positions added to the embeddings: they end at max_len
EVAL_POSITIONS_SEED = 0  # random positions outside training: the same draw for a sequence every pass


SCALABLE_INIT = 1 / math.log(32)  # SSMax's s at the start: logits unchanged where a query sees 32 keys


def keys_seen(mask: torch.Tensor | None, past: int, T: int, device) -> torch.Tensor:
    """How many keys each query may attend to, [B or 1, heads or 1, T, 1]: from the mask, or
    past + i + 1 for query i under the causal one."""
    if mask is None:
        return torch.arange(past + 1, past + T + 1, device=device).view(1, 1, T, 1)
    seen = (mask if mask.dtype == torch.bool else mask > float("-inf")).sum(-1)
    return seen.reshape((1,) * (3 - seen.dim()) + tuple(seen.shape)).unsqueeze(-1)


class SelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float, scalable: bool = False, qkv_conv: int = 0):
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        # softmax=scalable (SSMax): the per-head s of s·log(n)
        self.length_scale = nn.Parameter(torch.full((n_heads,), SCALABLE_INIT)) if scalable else None
        self.conv = None
        if qkv_conv:  # Primer's depthwise causal convolution, starting as the identity (the newest tap 1)
            self.conv = nn.Conv1d(3 * d_model, 3 * d_model, qkv_conv, groups=3 * d_model, bias=False)
            nn.init.zeros_(self.conv.weight)
            with torch.no_grad():
                self.conv.weight[:, 0, -1] = 1.0

    def convolved(self, qkv: torch.Tensor, cache) -> tuple[torch.Tensor, torch.Tensor | None]:
        """q, k, v mixed over the last qkv_conv positions of each channel, and the raw rows the
        next call needs (the cache's third part; zeros before the first token)."""
        if self.conv is None:
            return qkv, None
        width = self.conv.kernel_size[0] - 1
        before = qkv.new_zeros(qkv.shape[0], width, qkv.shape[2]) if cache is None else cache[2]
        rows = torch.cat([before, qkv], dim=1)
        return self.conv(rows.transpose(1, 2)).transpose(1, 2), rows[:, rows.shape[1] - width:]

    def forward(self, x: torch.Tensor, cache=None, rotary=None, bias=None):
        """`rotary`: (cos, sin) of the new tokens' positions; `bias`: the attention mask
        [..., T, T_past + T] in place of the causal one: boolean (True: may attend; bidirectional,
        prefix) or additive float (alibi, which holds the causal or prefix mask too)."""
        B, T, C = x.shape
        qkv, recent = self.convolved(self.qkv(x), cache)
        q, k, v = qkv.view(B, T, 3, self.n_heads, C // self.n_heads).permute(2, 0, 3, 1, 4)
        if rotary is not None:
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        if cache is not None:
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        past = k.shape[2] - T
        if bias is not None:
            mask, causal = bias if bias.dtype == torch.bool else bias.to(q.dtype), False
        elif past == 0:
            mask, causal = None, True
        elif T == 1:
            mask, causal = None, False  # one new token may see every cached one
        else:  # a chunk after a cache: query i sees keys up to past + i
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
            causal = False
        if self.length_scale is not None:  # every logit, the alibi bias too, times s·log(n)
            factor = self.length_scale.view(1, -1, 1, 1) * keys_seen(mask, past, T, x.device).to(q.dtype).log()
            q = q * factor
            if mask is not None and mask.dtype != torch.bool:  # -inf stays -inf; 0 · -inf would be NaN
                hidden = mask == float("-inf")
                mask = (mask.masked_fill(hidden, 0.0) * factor).masked_fill(hidden, float("-inf"))
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal, dropout_p=self.dropout if self.training else 0.0
        )
        return self.proj(y.transpose(1, 2).reshape(B, T, C)), (k, v) if recent is None else (k, v, recent)


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        softmax = getattr(cfg, "softmax", "standard")  # runs saved before it was an option
        self.attn = SelfAttention(cfg.d_model, cfg.n_heads, cfg.dropout,
                                  scalable=str(getattr(softmax, "value", softmax)) == "scalable",
                                  qkv_conv=getattr(cfg, "qkv_conv", 0))
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(), nn.Linear(cfg.d_ff, cfg.d_model), nn.Dropout(cfg.dropout)
        )
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, cache=None, rotary=None, bias=None):
        a, cache = self.attn(self.ln1(x), cache, rotary, bias)
        x = x + self.drop(a)
        return x + self.mlp(self.ln2(x)), cache


class TransformerLM(nn.Module):
    def __init__(self, cfg, vocab_size: int, sep_id: int | None = None, coupling_ids: tuple[int, ...] = ()):
        super().__init__()
        self.kind = str(getattr(cfg.positions, "value", cfg.positions))
        self.random_positions, self.position_range = cfg.random_positions, cfg.max_len
        random_range = getattr(cfg, "random_range", "max_len")  # runs saved before it was an option
        self.random_range = str(getattr(random_range, "value", random_range))
        self.random_target_gap = getattr(cfg, "random_target_gap", 0)
        self.decode_budget = 0  # random positions drawn beyond a stateless pass's tokens: see position_ids
        # where the input ends (random_target_gap shifts from there; a prefix mask ends there): see set_attention
        self.attention_mask, self.sep_id = "causal", sep_id
        if self.kind in TABLES:
            self.max_len = cfg.max_len  # decoding and the teacher read it; rope, alibi, none have no wall
        self.embed = nn.Embedding(vocab_size, cfg.d_model)
        if self.kind == "learned":
            self.positions = nn.Parameter(torch.zeros(cfg.max_len, cfg.d_model))
        elif self.kind == "sinusoidal":
            self.register_buffer("positions", sinusoidal_table(cfg.max_len, cfg.d_model), persistent=False)
        elif self.kind == "rope":
            self.register_buffer("frequencies", rotary_frequencies(cfg.d_model // cfg.n_heads), persistent=False)
        elif self.kind == "alibi":
            self.register_buffer("slopes", alibi_slopes(cfg.n_heads), persistent=False)
        self.coupling = None
        if getattr(cfg, "coupling_tokens", None):  # runs saved before it was an option have none
            if sep_id is None or len(coupling_ids) != len(cfg.coupling_tokens):
                raise ValueError("position coupling needs the <sep> id and the ids of model.coupling_tokens: "
                                 "msr.models.build_model_for(cfg, tokenizer)")
            self.coupling = nn.Embedding(cfg.coupling_range, cfg.d_model)
            self.register_buffer("coupling_markers", torch.tensor(coupling_ids), persistent=False)
        self.drop = nn.Dropout(cfg.dropout)
        # With share_layers, one block is applied n_layers times, as in the Universal Transformer
        # (Dehghani et al., 2019): every depth learns the same step, like an RNN's time steps.
        blocks = [Block(cfg)] * cfg.n_layers if cfg.share_layers else [Block(cfg) for _ in range(cfg.n_layers)]
        self.blocks = nn.ModuleList(blocks)
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, vocab_size, bias=False)
        self.apply(self._init)
        if cfg.tie_embeddings:
            self.head.weight = self.embed.weight
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith(("proj.weight", "mlp.2.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layers))
        if self.kind == "learned":
            nn.init.normal_(self.positions, mean=0.0, std=0.02)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def set_attention(self, mode: str, sep_id: int | None = None) -> None:
        """causal | bidirectional | prefix (msr/models/masks.py); a prefix ends at the first
        `sep_id` (default: the one the model was built with). Not a weight: checkpoints keep it in
        meta.json as `attention_mask`."""
        sep_id = self.sep_id if sep_id is None else sep_id
        if mode not in MODES or (mode == "prefix" and sep_id is None):
            raise ValueError(f"attention mask {mode!r}: one of {', '.join(MODES)} (prefix needs the <sep> id)")
        self.attention_mask, self.sep_id = mode, sep_id

    def position_ids(self, tokens: torch.Tensor, past: int, plan: torch.Tensor | None):
        """(positions of `tokens`, the plan to carry in the state): [T] in order, or [B, T] random.

        Random positions (Ruoss et al., 2023) are drawn in every pass, as their code does: in
        order, a model trained on random gaps would meet gaps of 1 everywhere, a distribution it
        never saw (arith with index hints, rope: 4-step exact match 0.03 in order, 1.00 drawn).
        Training draws from the global RNG; evaluation and decoding from a generator seeded
        afresh each pass, one draw per length, so a sequence scores the same every time and in
        any batch (msr/eval/metrics.py batches such a model's rows by length). A pass without a
        state draws for its T tokens plus `decode_budget` more (msr/eval/decoding.py reserves
        them for the tokens it will generate), and the state carries the draw on. With
        random_range=log_uniform, training draws each sequence's positions from a span of its own
        and every other pass takes them in order (the densest span training saw). With
        random_target_gap, training shifts each row's target by a random gap; in order otherwise."""
        B, T = tokens.shape
        log_uniform = self.random_range == "log_uniform"
        if self.training and past == 0 and self.random_target_gap:
            return target_gap_positions(tokens, self.sep_id, self.random_target_gap), None
        if self.training and past == 0 and self.random_positions:
            return random_positions(B, T, self.position_range, tokens.device, log_uniform=log_uniform), None
        if not self.random_positions or log_uniform:
            return torch.arange(past, past + T, device=tokens.device), None
        if plan is None:
            if past:
                raise ValueError("a cache without its positions: pass back the state the model returned")
            generator = torch.Generator(tokens.device).manual_seed(EVAL_POSITIONS_SEED)
            plan = random_positions(1, T + self.decode_budget, self.position_range, tokens.device, generator)
            plan = plan.expand(B, -1)  # one draw for every row: a row's score does not depend on its batch
        if past + T > plan.shape[1]:
            raise ValueError(f"{past + T} tokens, but positions were drawn for {plan.shape[1]}: "
                             f"reserve them first (msr.eval.decoding.reserve_positions)")
        return plan[:, past : past + T], plan

    def coupled(self, tokens: torch.Tensor, counts: torch.Tensor | None):
        """The coupling table's rows for `tokens` [B, T, d_model], and the counts to carry on."""
        fresh = counts is None
        indices, counts = coupled_positions(tokens, self.coupling_markers, self.sep_id, counts)
        if self.training and fresh:
            indices = indices + coupling_offsets(indices, self.coupling.num_embeddings)
        if indices.numel() and int(indices.max()) >= self.coupling.num_embeddings:
            raise ValueError(f"{int(indices.max()) + 1} coupled positions in a sequence, but "
                             f"model.coupling_range={self.coupling.num_embeddings}: raise it")
        return self.coupling(indices), counts

    def forward(self, tokens: torch.Tensor, state=None):
        """tokens [B, T] -> logits [B, T, V] and the state (KV cache, positions, coupling counts)
        after the last token."""
        caches, plan, counts = (None, None, None) if state is None else state
        past = 0 if caches is None else caches[0][0].shape[2]
        end = past + tokens.shape[1]
        if hasattr(self, "max_len") and end > self.max_len:
            raise ValueError(f"sequence of {end} tokens is longer than model.max_len={self.max_len}")
        positions, plan = self.position_ids(tokens, past, plan)
        x = self.embed(tokens)
        if self.coupling is not None:
            rows, counts = self.coupled(tokens, counts)
            x = x + rows
        rotary, bias = None, visible_keys(self.attention_mask, tokens, self.sep_id, past)  # None: causal
        if self.kind in TABLES:
            x = x + self.positions[positions]
        elif self.kind == "rope":
            rotary = rotary_angles(positions, self.frequencies)
        elif self.kind == "alibi":
            if bias is None and positions.dim() == 1:  # causal, in order: the bias the cache continues
                bias = alibi_bias(self.slopes, past, tokens.shape[1], x.dtype)
            else:  # a bidirectional or prefix mask, or a target shifted by random_target_gap
                bias = alibi_between(self.slopes, positions, bias, x.dtype)
        x = self.drop(x)
        cache = []
        for i, block in enumerate(self.blocks):
            x, layer_cache = block(x, None if caches is None else caches[i], rotary, bias)
            cache.append(layer_cache)
        return self.head(self.ln_f(x)), (tuple(cache), plan, counts)

    @staticmethod
    def reorder_state(state, index: torch.Tensor):
        """The state of sequences `index` (batch is dim 0 of every key, value and position tensor)."""
        caches, *positions = state
        return (tuple(tuple(part.index_select(0, index) for part in layer) for layer in caches),
                *(None if part is None else part.index_select(0, index) for part in positions))
