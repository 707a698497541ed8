"""Prompts as a model can read them, and the text it writes back.

A task model reads its input in the run's data template, then <sep>, and answers after it. A
Transformer reads at most model.max_len tokens: a prompt with no room left is cropped for a
language model (the last tokens are what it continues, as nanoGPT does) but refused for a task
model, since a cropped input is another question and its answer would be wrong for the one asked.
"""

from __future__ import annotations

import logging

from msr.errors import UserError
from msr.eval.decoding import new_token_budget

log = logging.getLogger("msr")


def task_prompts(tokenizer, inputs: list[str], template: str = "{input}") -> list[list[int]]:
    """Each input as a task model reads it: in its data template, then <sep>."""
    return [ids + [tokenizer.sep_id] for ids in tokenizer.encode_batch([template.format(input=x) for x in inputs])]


def not_text(tokenizer) -> tuple[int, ...]:
    """The special tokens decoding must never write: of them, only <eos> is part of an answer."""
    return tuple(i for i in tokenizer.special_ids() if i != tokenizer.eos_id)


def check_fits(encoded, limit: int | None, split: str) -> None:
    """A Transformer reads at most model.max_len tokens: longer examples are refused, never cut."""
    over = int((encoded.lengths > limit).sum()) if limit is not None and len(encoded) else 0
    if over:
        raise UserError(f"{over} of the {len(encoded)} {split} examples are longer than the run's model.max_len="
                        f"{limit} tokens (the longest has {int(encoded.lengths.max())}); evaluate on shorter ones, "
                        f"e.g. a lower data.{split}.max_steps")


def fit(model, ids: list[int], wanted: int, supervised: bool) -> tuple[list[int] | None, dict]:
    """The prompt as the model can read it (None: refused) and what its record says about that:
    `max_new_tokens` (the room it had), `cropped_to` or `refused`."""
    limit = getattr(model, "max_len", None)  # an RNN reads any length
    if limit is None or len(ids) < limit:
        return ids, {"max_new_tokens": new_token_budget(model, len(ids), wanted)}
    if supervised:
        return None, {"refused": f"reads as {len(ids)} tokens (data.template and <sep> included); "
                                 f"model.max_len={limit} leaves no room for an answer, and cropped it would be "
                                 f"another question"}
    # the room for max_new_tokens, but never less than half the window of context to continue from
    keep = limit - min(wanted, max(limit // 2, 1))
    return ids[len(ids) - keep:], {"cropped_to": keep, "max_new_tokens": limit - keep}


def warn_about_length(notes: list[dict], limit: int | None, wanted: int) -> None:
    """One line per kind of shortfall, whatever the number of prompts it hits."""
    total = len(notes)
    refused = sum("refused" in n for n in notes)
    if refused:
        log.warning("%d of %d prompts refused: longer than model.max_len=%d allows (a task model answers its whole "
                    "input); generations.jsonl says why for each", refused, total, limit)
    cropped = [n["cropped_to"] for n in notes if "cropped_to" in n]
    if cropped:
        log.warning("%d of %d prompts cropped to their last %d tokens (model.max_len=%d): the language model "
                    "continues from those", len(cropped), total, cropped[0], limit)
    cut = [n["max_new_tokens"] for n in notes if n.get("max_new_tokens", wanted) < wanted]
    if cut:
        log.warning("decode.max_new_tokens=%d is cut by model.max_len=%d for %d of %d prompts (to %d new tokens "
                    "or fewer): each record's max_new_tokens says how many it had", wanted, limit, len(cut), total,
                    max(cut))


def text_of(tokenizer, ids: list[int]) -> str:
    """The generated text with the <eos> the model wrote shown where it wrote it: a language model
    trained on a task's inputs closes each with <eos>, and without it the next input it invents
    would read as its answer. Only <eos> can be there (decode bans the other special tokens)."""
    return tokenizer.decode(ids, special_tokens=True)
