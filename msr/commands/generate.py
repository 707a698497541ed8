"""`msr generate run=RUN prompt=...`: continue prompts with a run's checkpoint.

The recipe: load the checkpoint(s), present each prompt as the run saw its inputs (its data
template, then <sep>: the model answers after it; a language model trained on a corpus just
continues the text), decode, print the continuations and write generations.jsonl.
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
from msr.eval.decoding import decode
from msr.eval.inference import load_models
from msr.runs import RunDir, atomic_write

log = logging.getLogger("msr")


def run(dict_cfg, run: RunDir) -> dict:
    cfg = to_object(dict_cfg)
    device = resolve_device(cfg.device.type)
    model, tokenizer, meta = load_models(check_runs("run", cfg.run), cfg.checkpoint, device)
    prompts = [cfg.prompt] if cfg.prompt else [
        line.rstrip("\n") for line in Path(cfg.prompts_file).read_text().splitlines() if line.strip()]
    if meta.get("objective", "supervised") == "supervised":
        template = meta.get("config", {}).get("data", {}).get("template", "{input}")
        ids = [p + [tokenizer.sep_id] for p in tokenizer.encode_batch([template.format(input=p) for p in prompts])]
        stop = tokenizer.eos_id
    else:  # a corpus model writes on: it never saw an end, so max_new_tokens ends it
        ids = tokenizer.encode_batch(prompts)
        stop = -1
    unknown = sum(p.count(tokenizer.unk_id) for p in ids)
    if unknown:
        log.warning("%d prompt symbols are not in the run's vocabulary and map to <unk>", unknown)

    t0 = time.perf_counter()
    decoded = decode(model, ids, stop, cfg.decode, device, cfg.seed)
    seconds = time.perf_counter() - t0
    records = [{"prompt": prompt, "generation": tokenizer.decode(d.ids), "logprob": round(d.logprob, 4), "rank": rank}
               for prompt, samples in zip(prompts, decoded) for rank, d in enumerate(samples)]
    atomic_write(run.path / "generations.jsonl", lambda f: f.writelines(json.dumps(r) + "\n" for r in records))

    out = Console()
    for r in records:
        out.print(f"[bold]{escape(r['prompt'])}[/] → {escape(r['generation'])}  [dim](logprob {r['logprob']:.2f})[/]",
                  highlight=False)
    new_tokens = sum(len(d.ids) for samples in decoded for d in samples)
    return {"prompts": len(prompts), "generations": len(records), "new_tokens": new_tokens,
            "tokens_per_second": round(new_tokens / max(seconds, 1e-9), 1), "device": str(device)}
