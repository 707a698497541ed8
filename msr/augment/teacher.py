"""A trained run as a teacher: it labels fresh inputs (pseudo-labels) and is the model that the
adversarial search tries to fool.

The teacher sees each input as it was trained to (its own data.template; with a scratchpad it
writes its working and the answer follows ####), decodes greedily, and gives each answer the
probability of the whole sequence it wrote: that is the confidence pseudo-labels are kept by.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass

from msr.augment.operations import OPERATIONS, Context
from msr.config import DecodeConfig
from msr.data import ANSWER_MARK, answer_of
from msr.errors import UserError
from msr.eval.decoding import decode
from msr.eval.inference import checkpoint_dir, load_checkpoint

log = logging.getLogger("msr")


@dataclass
class Answer:
    text: str  # the final answer (after ####, when the teacher writes a scratchpad)
    working: str | None  # what it wrote before ####, if anything
    confidence: float  # the probability of the whole generated sequence


class Teacher:
    def __init__(self, run: str, data_name: str, device):
        directory = checkpoint_dir(run, "best")
        self.model, self.tokenizer, meta = load_checkpoint(directory, device)
        if meta.get("objective") != "supervised":
            raise UserError(f"augment.teacher={run} is a language model (msr pretrain); a teacher answers "
                            f"inputs, so it must be a run of msr train or msr finetune")
        if meta.get("task") != data_name:
            raise UserError(f"augment.teacher={run} was trained on data={meta.get('task')}, not data={data_name}; "
                            f"its answers would be for another task: use a run trained on data={data_name}")
        trained_on = meta["config"]["data"]
        self.template = trained_on.get("template", "{input}")
        self.device = device

    def prompts(self, inputs: list[str]) -> list[list[int]]:
        return [ids + [self.tokenizer.sep_id]
                for ids in self.tokenizer.encode_batch([self.template.format(input=x) for x in inputs])]

    def fits(self, text: str) -> bool:
        """Whether the teacher can read `text` and still write an answer (a Transformer's max_len)."""
        return len(self.prompts([text])[0]) < getattr(self.model, "max_len", float("inf"))

    def answer(self, inputs: list[str]) -> list[Answer]:
        prompts = self.prompts(inputs)
        longest = max((len(p) for p in prompts), default=0)
        if longest >= getattr(self.model, "max_len", float("inf")):
            raise UserError(f"augment.teacher takes sequences of at most model.max_len={self.model.max_len} tokens; "
                            f"some inputs here have {longest - 1}: use a teacher trained on inputs this long")
        unknown = sum(ids.count(self.tokenizer.unk_id) for ids in prompts)
        if unknown:
            log.warning("the teacher's vocabulary lacks %d symbols of these inputs (read as <unk>)", unknown)
        decoded = decode(self.model, prompts, self.tokenizer.eos_id, DecodeConfig(), self.device)
        answers = []
        for [best] in decoded:
            text = self.tokenizer.decode(best.ids)
            working = text.rpartition(ANSWER_MARK)[0].strip() if ANSWER_MARK in text else None
            answers.append(Answer(answer_of(text), working, math.exp(best.logprob)))
        return answers


def right(answer: Answer, target: str) -> bool:
    return answer.text.split() == answer_of(target).split()


def adversarial_search(teacher: Teacher, rows: list[dict], ops: list[str], ctx: Context, tries: int, edits: int,
                       seed: int) -> tuple[dict[int, list[tuple[dict, str, str]]], dict]:
    """For each example the teacher gets right, up to `tries` candidates, each a chain of 1 to
    `edits` label-preserving operations. Returns, per source index, the candidates whose answer
    the teacher gets wrong, in the order tried, as (record, operations, teacher's answer); and counts."""
    first = teacher.answer([r["input"] for r in rows])
    attacked = [i for i, (r, a) in enumerate(zip(rows, first)) if right(a, r["target"])]
    candidates = []  # (source index, record, "op+op")
    for i in attacked:
        rng = random.Random(f"adversarial-{seed}-{i}")
        for _ in range(tries):
            record, applied = rows[i], []
            for _ in range(rng.randint(1, edits)):
                name = rng.choice(ops)
                edited = OPERATIONS[name].apply(record, rng, ctx)
                if edited is not None:
                    record, applied = edited, applied + [name]
            if applied:
                candidates.append((i, record, "+".join(applied)))
    candidates = [c for c in candidates if teacher.fits(c[1]["input"])]  # an added distractor may not fit
    found: dict[int, list[tuple[dict, str, str]]] = {}
    for (i, record, applied), answer in zip(candidates, teacher.answer([c[1]["input"] for c in candidates])):
        if not right(answer, record["target"]):
            found.setdefault(i, []).append((record, applied, answer.text))
    counts = {"examples": len(rows), "teacher_right": len(attacked), "candidates": len(candidates),
              "flipped": len(found)}
    log.info("adversarial search: the teacher answers %d of %d right; %d candidate edits flip %d of those (%.1f%%)",
             len(attacked), len(rows), len(candidates), len(found), 100 * len(found) / max(len(attacked), 1))
    return found, counts
