"""What `msr data` prints: the numbers of `msr.data.summary` as tables, and a few examples."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def show(name: str, data, summary: dict, examples: int) -> None:
    out = Console()  # the summary is the command's output: stdout, so it pipes
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
    counts_table("tasks", "tasks (examples)", splits, out)
    overlap = ", ".join(f"{pair.replace('/', ' in ')}: {n}" for pair, n in summary["overlap"].items())
    out.print(f"overlap of inputs between splits: {overlap or 'nothing to compare'}")
    for split, rows in data.splits.items():
        for r in rows[:examples]:
            steps = f" [dim]({r['task'] + ', ' if 'task' in r else ''}steps {r['steps']})[/]" if "steps" in r else ""
            out.print(f"[bold]{split}[/]{steps} " + escape(f"{r['input']!r} -> {r['target']!r}"), highlight=False)


def counts_table(key: str, title: str, splits: dict, out, share: bool = False, distinct: str = "") -> None:
    """One row per value of `key` (a step count, a label), one column per split; nothing when a split lacks it."""
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
