"""A task model's answers to a list of inputs: decoded with the configured strategy and, with
several samples per input, the majority final answer (self-consistency)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

from msr.data import answer_of
from msr.eval.decoding import decode
from msr.eval.prompts import not_text, task_prompts


@dataclass
class Answers:
    texts: list[str]  # per input, the sample chosen as its answer
    votes: list[int]  # how many of its samples gave that final answer
    logprobs: list[float]  # the chosen sample's log-probability under the model
    seconds: float  # decoding time, the prompts' encoding included
    tokens: int  # tokens written by the first sample of each input, its <eos> included

    @property
    def tokens_per_second(self) -> float:
        return round(self.tokens / max(self.seconds, 1e-9), 1)


def answer(model, tokenizer, inputs: list[str], cfg, device, seed: int) -> Answers:
    """`cfg`: the decode config. The inputs are presented as they are (already in the data template)."""
    t0 = time.perf_counter()
    decoded = decode(model, task_prompts(tokenizer, inputs), tokenizer.eos_id, cfg, device, seed,
                     banned=not_text(tokenizer))
    seconds = time.perf_counter() - t0
    chosen = [vote([tokenizer.decode(d.ids) for d in samples]) for samples in decoded]
    return Answers(texts=[text for text, _, _ in chosen], votes=[count for _, count, _ in chosen],
                   logprobs=[samples[index].logprob for samples, (_, _, index) in zip(decoded, chosen)],
                   seconds=seconds, tokens=sum(len(s[0].ids) + 1 for s in decoded))


def vote(samples: list[str]) -> tuple[str, int, int]:
    """The majority final answer over the samples (self-consistency): the first sample that
    gives it, its votes and its index; with one sample, that sample."""
    answers = [answer_of(s) for s in samples]
    majority, count = Counter(answers).most_common(1)[0]
    index = answers.index(majority)
    return samples[index], count, index


def same(prediction: str, target: str) -> bool:
    return prediction.split() == target.split()
