"""Decoding: beam search against exhaustive search and greedy, the cache against recomputing,
sampling controls, batching, and ensembles."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from msr.config import RecurrentConfig, TransformerConfig
from msr.eval.decoding import decode
from msr.models import build_model
from msr.models.ensemble import Ensemble

VOCAB, EOS = 6, 5
BEAM = 256  # wider than the 156 sequences of up to 3 tokens: nothing is pruned
MODELS = {
    "lstm": RecurrentConfig(name="lstm", embedding_size=16, hidden_size=16),
    "gru": RecurrentConfig(name="gru", embedding_size=16, hidden_size=16, num_layers=2),
    "transformer": TransformerConfig(d_model=16, n_layers=2, n_heads=2, d_ff=32, max_len=64),
    # the attention options whose cache holds more than keys and values (the convolution's raw rows)
    "transformer-conv": TransformerConfig(d_model=16, n_layers=2, n_heads=2, d_ff=32, positions="alibi",
                                          softmax="scalable", qkv_conv=3),
}


def settings(**changes) -> SimpleNamespace:
    base = dict(strategy="greedy", max_new_tokens=6, beam_size=4, length_penalty=1.0, temperature=1.0, top_k=0,
                top_p=1.0, num_return_sequences=1, self_consistency=1, batch_size=64)
    return SimpleNamespace(**{**base, **changes})


def model_for(name: str, seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(MODELS[name], VOCAB).eval()
    with torch.no_grad():  # the convolution starts as the identity: give its older taps weight
        for param_name, p in model.named_parameters():
            if param_name.endswith("conv.weight"):
                p.uniform_(-1, 1)
    return model


@torch.no_grad()
def sequence_logprob(model, prompt: list[int], continuation: list[int]) -> float:
    """Teacher-forced score of `continuation` after `prompt`: no cache, one full pass."""
    tokens = torch.tensor([prompt + continuation])
    logprobs = F.log_softmax(model(tokens)[0][0, :-1].float(), dim=-1)
    return float(sum(logprobs[len(prompt) - 1 + i, t] for i, t in enumerate(continuation)))


PROMPTS = [[1, 2, 3], [4], [2, 2, 1], [0, 1], [3, 3, 3, 3]]


@pytest.mark.parametrize("name", MODELS)
def test_greedy_with_the_cache_equals_recomputing_the_prefix(name):
    model = model_for(name)
    decoded = decode(model, PROMPTS, EOS, settings(), "cpu")
    for prompt, [out] in zip(PROMPTS, decoded):
        sequence = list(prompt)
        expected = []
        for _ in range(6):  # the slow way: read the whole prefix for every new token
            token = int(model(torch.tensor([sequence]))[0][0, -1].argmax())
            if token == EOS:
                break
            expected.append(token)
            sequence.append(token)
        assert out.ids == expected
        ended = len(expected) < 6
        assert out.logprob == pytest.approx(sequence_logprob(model, prompt, expected + [EOS] * ended), abs=1e-4)


@pytest.mark.parametrize("name", MODELS)
def test_beam_of_one_equals_greedy(name):
    model = model_for(name, seed=1)
    greedy = decode(model, PROMPTS, EOS, settings(), "cpu")
    beam = decode(model, PROMPTS, EOS, settings(strategy="beam", beam_size=1), "cpu")
    assert [g[0].ids for g in greedy] == [b[0].ids for b in beam]


@pytest.mark.parametrize("name", MODELS)
def test_a_wide_beam_finds_the_best_sequence_found_by_exhaustive_search(name):
    model = model_for(name, seed=2)
    length = 3
    candidates = [list(body) + [EOS] for n in range(length) for body in itertools.product(range(EOS), repeat=n)]
    candidates += [list(body) for body in itertools.product(range(EOS), repeat=length)]  # cut at max_new_tokens
    for prompt in PROMPTS[:3]:
        scores = {tuple(c): sequence_logprob(model, prompt, c) for c in candidates}
        best = max(scores, key=scores.get)
        [out] = decode(model, [prompt], EOS, settings(strategy="beam", beam_size=BEAM, max_new_tokens=length,
                                                      length_penalty=0.0), "cpu")[0][:1]
        assert out.ids == [t for t in best if t != EOS]
        assert out.logprob == pytest.approx(scores[best], abs=1e-4)


def test_beam_returns_distinct_sequences_best_first():
    model = model_for("lstm", seed=3)
    outs = decode(model, PROMPTS[:2], EOS, settings(strategy="beam", beam_size=5, num_return_sequences=3,
                                                    length_penalty=0.0), "cpu")
    for prompt, beams in zip(PROMPTS, outs):
        assert len(beams) == 3 and len({tuple(b.ids) for b in beams}) == 3
        assert [b.logprob for b in beams] == sorted((b.logprob for b in beams), reverse=True)


def test_batching_and_early_finishers_do_not_change_results():
    model = model_for("transformer", seed=4)
    together = decode(model, PROMPTS, EOS, settings(batch_size=2), "cpu")
    alone = [decode(model, [p], EOS, settings(), "cpu")[0] for p in PROMPTS]
    assert [t[0].ids for t in together] == [a[0].ids for a in alone]


def test_sampling_is_seeded_and_its_limits_reduce_to_greedy():
    model = model_for("gru", seed=5)
    greedy = [o[0].ids for o in decode(model, PROMPTS, EOS, settings(), "cpu")]
    sample = settings(strategy="sample", temperature=1.5, num_return_sequences=4)
    first = decode(model, PROMPTS, EOS, sample, "cpu", seed=7)
    assert [[o.ids for o in outs] for outs in first] == [[o.ids for o in outs] for outs in
                                                          decode(model, PROMPTS, EOS, sample, "cpu", seed=7)]
    assert len({tuple(o.ids) for outs in first for o in outs}) > len(PROMPTS)  # samples differ
    for limit in (dict(top_k=1), dict(top_p=1e-6)):
        picked = decode(model, PROMPTS, EOS, settings(strategy="sample", temperature=2.0, **limit), "cpu", seed=3)
        assert [o[0].ids for o in picked] == greedy


def test_an_ensemble_averages_the_members_probabilities():
    a, b = model_for("lstm", seed=6), model_for("transformer", seed=7)
    tokens = torch.tensor([PROMPTS[0]])
    mixed, _ = Ensemble([a, b])(tokens)
    expected = (F.softmax(a(tokens)[0], -1) + F.softmax(b(tokens)[0], -1)) / 2
    assert torch.allclose(mixed.exp(), expected, atol=1e-6)
    alone, _ = Ensemble([a])(tokens)
    assert torch.allclose(alone, F.log_softmax(a(tokens)[0], -1), atol=1e-6)
    # it decodes like any model, its state being the members' states
    assert decode(Ensemble([a]), PROMPTS, EOS, settings(), "cpu")[0][0].ids == decode(a, PROMPTS, EOS, settings(),
                                                                                       "cpu")[0][0].ids
    beam = settings(strategy="beam", num_return_sequences=2)
    twice, once = decode(Ensemble([a, a]), PROMPTS, EOS, beam, "cpu"), decode(a, PROMPTS, EOS, beam, "cpu")
    assert [[o.ids for o in outs] for outs in twice] == [[o.ids for o in outs] for outs in once]
    assert [o.logprob for outs in twice for o in outs] == pytest.approx([o.logprob for outs in once for o in outs],
                                                                         abs=1e-5)
    # a mixed ensemble's beams are scored by the mixture: each the teacher-forced log-probability under it
    mixture = Ensemble([a, b])
    for prompt, [out] in zip(PROMPTS, decode(mixture, PROMPTS, EOS, settings(strategy="beam"), "cpu")):
        ended = len(out.ids) < 6
        assert out.logprob == pytest.approx(sequence_logprob(mixture, prompt, out.ids + [EOS] * ended), abs=1e-4)


FAVOURED = torch.tensor([9.0, 8.0, 7.0, 1.0, 1.0, 0.5])


class Favouring(torch.nn.Module):
    """A model that always puts most of its mass on the tokens it may never write (0, 1, 2), then on
    tokens 3 and 4 alike, then on <eos>: what survives the ban must still be ranked and distinct."""

    def forward(self, tokens, state=None):
        state = torch.zeros(tokens.shape[0]) if state is None else state  # a row per sequence, for reorder_state
        return FAVOURED.expand(*tokens.shape, VOCAB).clone(), state + tokens.shape[1]

    @staticmethod
    def reorder_state(state, index):
        return state.index_select(0, index)


@pytest.mark.parametrize("strategy", [dict(strategy="greedy"), dict(strategy="sample", temperature=5.0),
                                      dict(strategy="beam", beam_size=6, num_return_sequences=4)])
def test_no_strategy_writes_a_token_it_may_never_generate(strategy):
    banned = (0, 1, 2)  # <pad>, <unk>, <sep> in a real vocabulary
    unbanned = decode(Favouring(), PROMPTS, EOS, settings(max_new_tokens=3, **strategy), "cpu", seed=1)
    assert any(set(o.ids) & set(banned) for outs in unbanned for o in outs)  # the default bans nothing
    outs = decode(Favouring(), PROMPTS, EOS, settings(max_new_tokens=3, **strategy), "cpu", seed=1, banned=banned)
    written = [o.ids for outs_ in outs for o in outs_]
    assert written and all(set(ids) <= {3, 4} for ids in written)
    if strategy["strategy"] == "beam":
        assert all(len({tuple(o.ids) for o in beams}) == 4 for beams in outs)
    if strategy["strategy"] != "sample":  # three of 3 or 4, each the model's own (unrenormalised) log-probability
        assert len(outs[0][0].ids) == 3
        assert outs[0][0].logprob == pytest.approx(3 * float(F.log_softmax(FAVOURED, -1)[3]), abs=1e-4)


def test_greedy_with_several_return_sequences_is_refused():
    from msr.config import DecodeConfig
    from msr.errors import ConfigError

    with pytest.raises(ConfigError, match="decode.num_return_sequences=3 is not allowed: .*sample or .*beam"):
        DecodeConfig(num_return_sequences=3).check("decode.")
    DecodeConfig(strategy="beam", num_return_sequences=3).check("decode.")
    DecodeConfig(strategy="sample", num_return_sequences=3).check("decode.")
