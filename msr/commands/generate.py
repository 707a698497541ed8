"""`msr generate run=RUN prompt=...`: continue prompts with a run's checkpoint.

The recipe: load the checkpoint(s), present each prompt as the run saw its inputs (its data
template, then <sep>: the model answers after it; a language model trained on a corpus just
continues the text), fit it under a Transformer's model.max_len, decode, print the
continuations and write generations.jsonl.

A prompt with no room left under max_len is cropped for a language model (the last tokens are
what it continues, as nanoGPT does) but refused, alone, for a task model: a cropped input is
another question, and its answer would be wrong for the one asked.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from msr.config import check_runs, to_object
from msr.device import resolve_device
from msr.errors import UserError
from msr.eval.decoding import decode, new_token_budget
from msr.eval.inference import load_models
from msr.runs import RunDir, atomic_write

log = logging.getLogger("msr")


def run(dict_cfg, run: RunDir) -> dict:
    cfg = to_object(dict_cfg)
    device = resolve_device(cfg.device.type)
    model, tokenizer, meta = load_models(check_runs("run", cfg.run), cfg.checkpoint, device)
    prompts = [cfg.prompt] if cfg.prompt else [
        line.rstrip("\n") for line in Path(cfg.prompts_file).read_text().splitlines() if line.strip()]
    supervised = meta.get("objective", "supervised") == "supervised"
    if supervised:
        template = meta.get("config", {}).get("data", {}).get("template", "{input}")
        ids = [p + [tokenizer.sep_id] for p in tokenizer.encode_batch([template.format(input=p) for p in prompts])]
        stop = tokenizer.eos_id
    else:  # a corpus model writes on: it never saw an end, so max_new_tokens ends it
        ids = tokenizer.encode_batch(prompts)
        stop = -1
    unknown = sum(p.count(tokenizer.unk_id) for p in ids)
    if unknown:
        log.warning("%d prompt symbols are not in the run's vocabulary and map to <unk>", unknown)

    fitted = [fit(model, p, cfg.decode.max_new_tokens, supervised) for p in ids]
    notes = [note for _, note in fitted]
    kept = [i for i, (p, _) in enumerate(fitted) if p is not None]
    if not kept:
        raise UserError(f"prompt {prompts[0]!r} {notes[0]['refused']}" if len(prompts) == 1 else
                        f"all {len(prompts)} prompts of prompts_file={cfg.prompts_file} are refused: the first "
                        f"{notes[0]['refused']}")
    warn_about_length(notes, getattr(model, "max_len", None), cfg.decode.max_new_tokens)

    t0 = time.perf_counter()
    banned = (tokenizer.pad_id, tokenizer.unk_id, tokenizer.sep_id)  # not text: only <eos> may be written
    decoded = dict(zip(kept, decode(model, [fitted[i][0] for i in kept], stop, cfg.decode, device, cfg.seed,
                                    banned=banned)))
    seconds = time.perf_counter() - t0
    records = []
    for i, (prompt, note) in enumerate(zip(prompts, notes)):
        if i not in decoded:
            records.append({"prompt": prompt, "generation": None, "logprob": None, "rank": 0, **note})
            continue
        records += [{"prompt": prompt, "generation": text_of(tokenizer, d.ids), "logprob": round(d.logprob, 4),
                     "rank": rank, **note} for rank, d in enumerate(decoded[i])]
    atomic_write(run.path / "generations.jsonl", lambda f: f.writelines(json.dumps(r) + "\n" for r in records))

    out = Console()
    for r in records:
        if r["generation"] is None:
            out.print(f"[bold]{escape(r['prompt'])}[/] → [red]refused[/]: {escape(r['refused'])}", highlight=False)
            continue
        out.print(f"[bold]{escape(r['prompt'])}[/] → {escape(r['generation'])}  [dim](logprob {r['logprob']:.2f})[/]",
                  highlight=False)
    new_tokens = sum(len(d.ids) for samples in decoded.values() for d in samples)
    return {"prompts": len(prompts), "generations": sum(r["generation"] is not None for r in records),
            "refused": sum("refused" in n for n in notes), "cropped": sum("cropped_to" in n for n in notes),
            "new_tokens": new_tokens, "tokens_per_second": round(new_tokens / max(seconds, 1e-9), 1),
            "device": str(device)}


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
    return tokenizer.tokenizer.decode(ids, skip_special_tokens=False)
