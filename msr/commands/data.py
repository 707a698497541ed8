"""`msr data`: summarise the composed data set without training; `--export` writes it as JSONL.

The recipe: load the data exactly as `msr train` would (same cache, template, scratchpad and
tokenizer), measure it, print the tables, keep the numbers in metrics.json.
"""

from __future__ import annotations

import json
import logging

from msr.config import TaskConfig, to_object
from msr.data import load_data
from msr.data.summary import repeats_warning, summarize
from msr.data.tables import show
from msr.data.tokenizer import TextTokenizer
from msr.runs import RunDir, atomic_write

log = logging.getLogger("msr")


def run(dict_cfg, run: RunDir) -> dict:
    cfg = to_object(dict_cfg)
    data = load_data(cfg.data, cfg.paths)
    field = "text" if data.corpus else "input"
    tokenizer = TextTokenizer.build((r[field] + " " + r.get("target", "") for r in data.splits["train"]),
                                    cfg.data.tokenizer, cfg.data.vocab_size)
    summary = summarize(data, tokenizer)
    show(cfg.data.name, data, summary, cfg.examples)
    if not data.corpus:
        for split, counts in summary["splits"].items():
            warning = repeats_warning(split, counts, isinstance(cfg.data, TaskConfig))
            if warning:
                log.warning(warning)
    if cfg.export:
        folder = run.path / "data"
        folder.mkdir(exist_ok=True)
        for split, rows in data.splits.items():
            atomic_write(folder / f"{split}.jsonl", lambda f: f.writelines(json.dumps(r) + "\n" for r in rows))
        log.info("exported %s to %s (read back with data=files data.path=%s)", cfg.data.name, folder, folder)
    return {"data": {"name": cfg.data.name, **summary}}
