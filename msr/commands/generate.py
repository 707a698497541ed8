"""`msr generate run=RUN prompt=...`: continue prompts with a run's checkpoint.

The recipe: load the checkpoint(s), present each prompt as the run saw its inputs (its data
template, then <sep>: the model answers after it; a language model trained on a corpus just
continues the text), fit it under a Transformer's model.max_len (msr.eval.prompts says how),
decode, print the continuations and write generations.jsonl.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from msr.config import check_runs, to_object
from msr.device import resolve_device
from msr.errors import UserError
from msr.eval.decoding import decode
from msr.eval.inference import load_models
from msr.eval.prompts import fit, not_text, task_prompts, text_of, warn_about_length
from msr.eval.tables import show_generations
from msr.runs import RunDir, atomic_write

log = logging.getLogger("msr")


def run(dict_cfg, run: RunDir) -> dict:
    cfg = to_object(dict_cfg)
    device = resolve_device(cfg.device.type)
    model, tokenizer, meta = load_models(check_runs("run", cfg.run), cfg.checkpoint, device)
    prompts = [cfg.prompt] if cfg.prompt else [
        line.rstrip("\n") for line in Path(cfg.prompts_file).read_text().splitlines() if line.strip()]
    if meta.get("objective") == "masked":
        raise UserError(f"run={cfg.run} is a masked LM (pretrain.objective=masked): it fills in <mask> tokens and "
                        f"cannot write left to right; fine-tune it first (msr finetune init={cfg.run}): that makes it "
                        f"a prefix LM, which generates")
    supervised = meta.get("objective", "supervised") == "supervised"
    if supervised:
        ids = task_prompts(tokenizer, prompts, meta.get("config", {}).get("data", {}).get("template", "{input}"))
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
    decoded = dict(zip(kept, decode(model, [fitted[i][0] for i in kept], stop, cfg.decode, device, cfg.seed,
                                    banned=not_text(tokenizer))))
    seconds = time.perf_counter() - t0
    records = []  # one per continuation; a refused prompt gets one that says why
    for i, (prompt, note) in enumerate(zip(prompts, notes)):
        if i not in decoded:
            records.append({"prompt": prompt, "generation": None, "logprob": None, "rank": 0, **note})
            continue
        records += [{"prompt": prompt, "generation": text_of(tokenizer, d.ids), "logprob": round(d.logprob, 4),
                     "rank": rank, **note} for rank, d in enumerate(decoded[i])]
    atomic_write(run.path / "generations.jsonl", lambda f: f.writelines(json.dumps(r) + "\n" for r in records))
    show_generations(records)
    new_tokens = sum(len(d.ids) for samples in decoded.values() for d in samples)
    return {"prompts": len(prompts), "generations": sum(r["generation"] is not None for r in records),
            "refused": sum("refused" in n for n in notes), "cropped": sum("cropped_to" in n for n in notes),
            "new_tokens": new_tokens, "tokens_per_second": round(new_tokens / max(seconds, 1e-9), 1),
            "device": str(device)}
