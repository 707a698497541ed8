"""`msr data`: summarise the composed data set without training; `--export` writes it as JSONL.

The recipe: load the data exactly as `msr train` would (same cache, template, scratchpad and
tokenizer), measure it, print the tables, keep the numbers in metrics.json.
"""

from __future__ import annotations

import json
import logging

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from msr.config import TaskConfig, to_object
from msr.data import load_data
from msr.data.summary import repeats_warning, summarize
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


def show(name: str, data, summary: dict, examples: int) -> None:
    out = Console()  # the summary is this command's output: stdout, so it pipes
    splits = summary["splits"]
    if summary["corpus"]:
        table = Table("split", "characters", "tokens", "unknown", title=f"{name}: a text corpus, "
                      f"vocabulary {summary['vocab_size']}")
        for split, s in splits.items():
            table.add_row(split, f"{s['characters']:,}", f"{s['tokens']:,}", str(s["unknown_tokens"]))
        out.print(table)
        for split, rows in data.splits.items():
            out.print(f"[bold]{split}[/] begins: " + escape(repr(rows[0]["text"][:200])), highlight=False)
        return

    def spread(p: dict) -> str:
        return f"{p['p50']} / {p['p90']} / {p['p99']} / {p['max']}"

    table = Table("split", "examples", "distinct inputs", "input tokens p50/p90/p99/max",
                  "target tokens p50/p90/p99/max", "unknown",
                  title=f"{name}: vocabulary {summary['vocab_size']} tokens")
    for split, s in splits.items():
        table.add_row(split, f"{s['examples']:,}", f"{s['distinct_inputs']:,}", spread(s["input_tokens"]),
                      spread(s["target_tokens"]), str(s["unknown_tokens"]))
    out.print(table)
    counts_table("steps", "steps histogram: examples / distinct inputs", splits, out,
                 distinct="distinct_inputs_by_steps")
    counts_table("labels", "labels (share of split)", splits, out, share=True)
    overlap = ", ".join(f"{pair.replace('/', ' in ')}: {n}" for pair, n in summary["overlap"].items())
    out.print(f"overlap of inputs between splits: {overlap or 'nothing to compare'}")
    for split, rows in data.splits.items():
        for r in rows[:examples]:
            steps = f" [dim](steps {r['steps']})[/]" if "steps" in r else ""
            out.print(f"[bold]{split}[/]{steps} " + escape(f"{r['input']!r} -> {r['target']!r}"), highlight=False)


def counts_table(key: str, title: str, splits: dict, out, share: bool = False, distinct: str = "") -> None:
    if not all(key in s for s in splits.values()):
        return
    values = sorted({v for s in splits.values() for v in s[key]}, key=lambda v: (len(v), v) if key == "steps" else v)
    table = Table(key, *splits, title=title)
    for v in values:
        cells = []
        for s in splits.values():
            n = s[key].get(v, 0)
            cell = f"{n / s['examples']:.1%}" if share else f"{n:,}"
            cells.append(f"{cell} / {s[distinct].get(v, 0):,}" if distinct else cell)
        table.add_row(v, *cells)
    out.print(table)
