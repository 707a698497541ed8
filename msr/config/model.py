"""model/: the recurrent networks (rnn, lstm, gru) and the Transformer."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from omegaconf import MISSING

from msr.config.base import Validated, fraction, positive_ints, require


class Positions(str, Enum):
    learned = "learned"  # a trained table added to the embeddings (ends at max_len)
    sinusoidal = "sinusoidal"  # the fixed sin/cos table (ends at max_len)
    rope = "rope"  # rotary q and k per head: no length limit
    alibi = "alibi"  # per-head linear attention biases: no length limit
    none = "none"  # NoPE, the causal mask alone: no length limit


class RandomRange(str, Enum):
    max_len = "max_len"  # every sequence from [0, max_len) (Ruoss et al.); drawn at evaluation too
    log_uniform = "log_uniform"  # from [0, R), R log-uniform in [length, max_len]; evaluated in order


class Softmax(str, Enum):
    standard = "standard"  # softmax(z)
    scalable = "scalable"  # softmax(s log(n) z), n the keys a query sees, s learned per head (SSMax)


class Attention(str, Enum):
    none = "none"  # the recurrent state alone
    dot = "dot"  # Luong's dot scores (scaled by 1/sqrt(hidden_size))
    additive = "additive"  # Bahdanau's v·tanh(W_q h_t + W_k h_j)


@dataclass
class RecurrentConfig(Validated):
    name: str = MISSING  # rnn | lstm | gru: each option of model/ names itself
    embedding_size: int = 64
    hidden_size: int = 128
    num_layers: int = 1
    dropout: float = 0.0
    tie_embeddings: bool = False
    # each output attends over the hidden states of positions <= t, then tanh(W[h; context])
    # feeds the output layer; incremental decoding keeps the hidden-state history as its state
    attention: Attention = Attention.none
    # feed the attention output back into the next step's input (Luong et al.): a loop over
    # time steps instead of one cuDNN call, several times slower; needs model.attention
    input_feeding: bool = False

    def check(self, p: str) -> None:
        require(not self.input_feeding or self.attention != "none", p + "input_feeding", self.input_feeding,
                "needs model.attention=dot|additive (it feeds the attention back into the recurrence)")
        require(self.name in ("rnn", "lstm", "gru"), p + "name", self.name, "one of rnn, lstm, gru")
        positive_ints(self, p, "embedding_size", "hidden_size", "num_layers")
        fraction(p + "dropout", self.dropout)
        require(
            not self.tie_embeddings or self.embedding_size == self.hidden_size,
            p + "tie_embeddings", self.tie_embeddings,
            f"tied embeddings need model.embedding_size == model.hidden_size "
            f"(now {self.embedding_size} and {self.hidden_size})",
        )


@dataclass
class TransformerConfig(Validated):
    name: str = "transformer"
    d_model: int = 128
    n_layers: int = 3
    n_heads: int = 4
    d_ff: int = 512
    dropout: float = 0.0
    positions: Positions = Positions.learned
    max_len: int = 256  # the table's length for learned/sinusoidal; also the random_positions range
    # each sequence's positions are sorted random indices from [0, max_len), not 0..n-1 (Ruoss et
    # al., 2023), so a longer test sequence meets no unseen position index; drawn in evaluation and
    # decoding too (seeded), as in training. For learned, sinusoidal and rope
    random_positions: bool = False
    # where they are drawn from. max_len: every sequence spreads over [0, max_len), so a longer
    # sequence's positions sit closer together than any training sequence's. log_uniform: each
    # training sequence over its own [0, R), R log-uniform between its length and max_len, so
    # gaps of 1 (R = length) and long distances are both seen; evaluation and decoding use
    # positions in order, the dense end of that range, at any length
    random_range: RandomRange = RandomRange.max_len
    # in training, each row's positions from its <sep> on move on by a random 0..random_target_gap,
    # so how far the target sits from the input says nothing about which input token a step reads;
    # evaluation and decoding use positions in order (gap 0, seen in training). For rope and alibi
    random_target_gap: int = 0
    # scalable: each query's attention logits times s·log(n), n the keys it may see and s learned
    # per head (Nakanishi, 2025, "Scalable-Softmax"), so a query that picks one key out of many
    # stays as sharp at a longer length instead of fading over more competitors
    softmax: Softmax = Softmax.standard
    # Primer's multi-dconv-head attention (So et al., 2021): q, k and v each mixed over the last
    # qkv_conv positions by a depthwise causal convolution, so a head knows its neighbours exactly
    # (which ALiBi's recency penalty and NoPE cannot give); 0 turns it off
    qkv_conv: int = 0
    # position coupling (Cho et al., 2024): each of these tokens starts the next coupled index,
    # counted afresh in the input and after <sep>, so the k-th step of the target and the k-th
    # step of the input it reads share index k at any length. A learned table of coupling_range
    # rows is added to the embeddings beside model.positions (which still orders the tokens
    # within a step); in training each sequence's indices start at a random row, so every row is
    # trained, and evaluation starts at 0. Empty: off
    coupling_tokens: list[str] = field(default_factory=list)
    coupling_range: int = 32
    tie_embeddings: bool = True
    share_layers: bool = False  # one block applied n_layers times (Universal Transformer)

    def check(self, p: str) -> None:
        self.check_name(p)
        positive_ints(self, p, "d_model", "n_layers", "n_heads", "d_ff", "max_len", "coupling_range")
        require(self.d_model % self.n_heads == 0, p + "n_heads", self.n_heads,
                f"must divide model.d_model={self.d_model}")
        fraction(p + "dropout", self.dropout)
        head_dim = self.d_model // self.n_heads
        require(self.positions != "rope" or head_dim % 2 == 0, p + "positions", "rope",
                f"rotates pairs of dimensions, so the head dimension model.d_model/model.n_heads "
                f"must be even (now {self.d_model}/{self.n_heads}={head_dim})")
        require(not self.random_positions or self.positions in ("learned", "sinusoidal", "rope"),
                p + "random_positions", self.random_positions,
                f"works with model.positions=learned|sinusoidal|rope, not {Positions(self.positions).value}")
        require(self.random_target_gap >= 0, p + "random_target_gap", self.random_target_gap, "must be >= 0")
        require(all(isinstance(t, str) and t.strip() == t and t for t in self.coupling_tokens),
                p + "coupling_tokens", list(self.coupling_tokens),
                "a list of tokens of the vocabulary, e.g. [+,-,*]")
        require(self.qkv_conv >= 0, p + "qkv_conv", self.qkv_conv, "a kernel width >= 1, or 0 for none")
        require(not self.random_target_gap or (self.positions in ("rope", "alibi") and not self.random_positions),
                p + "random_target_gap", self.random_target_gap,
                "shifts rope or alibi positions in order: set model.positions=rope|alibi and "
                "model.random_positions=false, or model.random_target_gap=0")
        require(self.random_range == "max_len" or self.random_positions, p + "random_range",
                RandomRange(self.random_range).value, "says where random positions are drawn from: "
                "set model.random_positions=true with it")
