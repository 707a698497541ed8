"""How a Transformer knows where a token is: added tables, rotations of q and k, or attention biases.

- learned / sinusoidal: a [max_len, d_model] table added to the token embeddings (a max_len wall).
- rope: q and k of each head rotated by angles proportional to the position (Su et al., 2021),
  so q·k depends on the offset between two tokens only.
- alibi: a per-head penalty on attention, slope × distance (Press et al., 2022).
- none (NoPE): the causal mask alone tells a token how many came before (Kazemnejad et al., 2023).

rope, alibi and none have no table, hence no length limit.
"""

from __future__ import annotations

import math

import torch

ROTARY_BASE = 10000.0


def sinusoidal_table(max_len: int, d_model: int) -> torch.Tensor:
    position = torch.arange(max_len).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
    table = torch.zeros(max_len, d_model)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: d_model // 2])
    return table


def random_positions(batch: int, length: int, limit: int, device, generator=None,
                     log_uniform: bool = False) -> torch.Tensor:
    """[batch, length] sorted distinct indices drawn from [0, limit), one draw per sequence
    (Ruoss et al., 2023); with `log_uniform`, each sequence's from its own [0, R), R drawn
    log-uniformly in [length, limit]. `generator`, or torch's global RNG: a seeded run repeats them."""
    limit = max(limit, length)
    draw = torch.rand(batch, limit, device=device, generator=generator)
    if log_uniform:
        scale = torch.rand(batch, 1, device=device, generator=generator)
        span = (length * (limit / length) ** scale).floor().clamp(length, limit)
        draw = draw.masked_fill(torch.arange(limit, device=device) >= span, 2.0)  # after every valid index
    return draw.argsort(dim=1)[:, :length].sort(dim=1).values


def target_gap_positions(tokens: torch.Tensor, sep_id: int | None, limit: int, generator=None) -> torch.Tensor:
    """[B, T] positions in order, each row's from its first <sep> on shifted by its own random gap
    in [0, limit] (torch's global RNG unless `generator`): the distance from a target token back to
    the input then varies from row to row, while distances within the input and within the target
    stay exact. A row without <sep> is not shifted."""
    if sep_id is None:
        raise ValueError("random_target_gap needs the <sep> id: msr.models.build_model_for(cfg, tokenizer)")
    B, T = tokens.shape
    gap = torch.randint(0, limit + 1, (B, 1), device=tokens.device, generator=generator)
    after_input = (tokens == sep_id).cumsum(dim=1) > 0  # the first <sep> and all after it
    return torch.arange(T, device=tokens.device)[None, :] + gap * after_input


def random_position_models(model) -> list:
    """The Transformers inside `model` (itself, or an ensemble's members) with random positions:
    drawn at evaluation too, they draw a sequence's positions over the length of the pass that
    starts it (random_range=log_uniform evaluates in order and is not among them)."""
    return [m for m in model.modules() if getattr(m, "random_positions", False)
            and getattr(m, "random_range", "max_len") == "max_len"]


def rotary_frequencies(head_dim: int) -> torch.Tensor:
    """θ_i = base^(-2i/head_dim) for the head_dim/2 rotated pairs."""
    return ROTARY_BASE ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)


def rotary_angles(positions: torch.Tensor, frequencies: torch.Tensor):
    """(cos, sin) of position × θ, shaped to broadcast over [B, heads, T, head_dim/2]:
    positions [T] gives [T, D/2]; positions [B, T] gives [B, 1, T, D/2]."""
    angles = positions.to(frequencies.dtype)[..., None] * frequencies
    if angles.dim() == 3:
        angles = angles[:, None]
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the pairs (x_i, x_{i+D/2}) of x [B, heads, T, D] by the angles (GPT-NeoX layout:
    two contiguous halves, no strided gather)."""
    first, second = x.float().chunk(2, dim=-1)
    rotated = torch.cat([first * cos - second * sin, first * sin + second * cos], dim=-1)
    return rotated.to(x.dtype)


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """Press et al.'s head slopes: for n a power of two, the geometric sequence 2^(-8/n), ...,
    2^(-8) (8 heads: 1/2 ... 1/256); otherwise those of the power of two below n, then every
    other slope of the next power of two, as in their reference code."""
    def geometric(n: int) -> list[float]:
        return [2 ** (-8 * (i + 1) / n) for i in range(n)]

    below = 2 ** math.floor(math.log2(n_heads))
    slopes = geometric(below) + geometric(2 * below)[0::2][: n_heads - below]
    return torch.tensor(slopes)


def alibi_between(slopes: torch.Tensor, positions: torch.Tensor, visible: torch.Tensor | None,
                  dtype) -> torch.Tensor:
    """[B or 1, heads, T, T] ALiBi for a pass without a cache: -slope × |p_i - p_j| between the
    positions `positions` ([T], or [B, T] with random_target_gap) where `visible` allows (a
    bidirectional or prefix mask, [B or 1, 1, T, T]; None: the causal one), -inf elsewhere."""
    positions = positions.reshape(-1, positions.shape[-1])  # [B or 1, T]: a 1 broadcasts over `visible`'s rows
    distance = (positions[:, :, None] - positions[:, None, :]).abs().to(dtype)  # [B or 1, T queries, T keys]
    if visible is None:
        T = positions.shape[1]
        visible = torch.ones(T, T, dtype=torch.bool, device=positions.device).tril()
    bias = -slopes.to(dtype)[None, :, None, None] * distance[:, None]
    return bias.masked_fill(~visible, float("-inf"))


def alibi_bias(slopes: torch.Tensor, past: int, length: int, dtype) -> torch.Tensor:
    """[heads, length, past + length] additive attention mask for queries at positions
    past..past+length-1: -slope × distance to each earlier key, -inf for the later ones."""
    queries = torch.arange(past, past + length, device=slopes.device)[:, None]
    keys = torch.arange(past + length, device=slopes.device)[None, :]
    distance = (queries - keys).to(dtype)
    bias = -slopes.to(dtype)[:, None, None] * distance
    return bias.masked_fill(distance < 0, float("-inf"))


def coupled_positions(tokens: torch.Tensor, markers: torch.Tensor, sep_id: int,
                      counts: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Position coupling (Cho et al., 2024): [B, T] indices, each the number of `markers` seen
    since the row's last <sep> (or its start), so the k-th step of the input and the k-th step of
    the target share index k at any length; and the [B, 2] counts that continue the rows in the
    next call (markers seen in all, and that total at the last <sep>)."""
    total, base = (tokens.new_zeros(tokens.shape[0], 2) if counts is None else counts).unbind(-1)
    running = total[:, None] + torch.isin(tokens, markers).cumsum(dim=1)
    # running never falls, so the running maximum of its values at <sep> is the latest one
    base = torch.where(tokens == sep_id, running, base[:, None]).cummax(dim=1).values
    return running - base, torch.stack([running[:, -1], base[:, -1]], dim=-1)


def coupling_offsets(indices: torch.Tensor, table: int, generator=None) -> torch.Tensor:
    """[B, 1] random starts for training, each row's indices shifted so they stay below `table`:
    every row of the table is trained, not only those a short sequence reaches from 0."""
    room = (table - indices.amax(dim=1, keepdim=True)).clamp(min=1)  # a row too long fails the caller's check
    draw = torch.rand(room.shape, device=indices.device, generator=generator)
    return (draw * room).floor().long()
