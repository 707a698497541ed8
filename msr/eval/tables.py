"""What `msr evaluate` and `msr generate` print: their output, on stdout, so it pipes."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from msr.eval import scores


def show_evaluation(summary: dict) -> None:
    out = Console()
    split = summary["split"]
    table = Table("metric", "value", title=f"{summary['examples']:,} {split} examples, "
                  f"{summary['decode']['strategy']} decoding")
    for key, value in summary["metrics"].items():
        table.add_row(key, f"{value:.4f}")
    out.print(table)
    if summary["steps_detail"]:
        steps = Table("steps", "n", "accuracy", "95% interval", title="accuracy by reasoning steps")
        for k, row in summary["steps_detail"].items():
            steps.add_row(k, str(row["n"]), f"{row['accuracy']:.3f}", f"{row['ci95'][0]:.3f} – {row['ci95'][1]:.3f}")
        out.print(steps)
    if "accuracy_by_task" in summary:  # a mixture
        tasks = Table("task", "accuracy", "by steps", title="accuracy by task")
        for task, accuracy in summary["accuracy_by_task"].items():
            by_steps = "  ".join(f"{k}: {v:.3f}" for k, v in summary["accuracy_by_task_steps"][task].items())
            tasks.add_row(task, f"{accuracy:.3f}", by_steps)
        out.print(tasks)
    fit = summary["compounding_fit"]
    if fit:
        out.print(f"error compounding: {scores.describe_fit(fit)}")
    if "classification" in summary:
        report = summary["classification"]
        confusion = report["confusion"]
        matrix = Table("true \\ predicted", *confusion["columns"],
                       title=f"confusion (macro F1 {report['macro_f1']:.3f}, micro F1 {report['micro_f1']:.3f})")
        for label, counts in zip(confusion["labels"], confusion["matrix"]):
            matrix.add_row(label, *map(str, counts))
        out.print(matrix)
    if "text_metrics" in summary:
        t = summary["text_metrics"]
        out.print(f"BLEU {t['bleu']:.2f}  chrF {t['chrf']:.2f}  TER {t['ter']:.2f}  "
                  f"distinct-1/2 {t['distinct_1']:.3f}/{t['distinct_2']:.3f}  repetition {t['repetition_rate']:.3f}")


def show_generations(records: list[dict]) -> None:
    out = Console()
    for r in records:
        if r["generation"] is None:
            out.print(f"[bold]{escape(r['prompt'])}[/] → [red]refused[/]: {escape(r['refused'])}", highlight=False)
            continue
        out.print(f"[bold]{escape(r['prompt'])}[/] → {escape(r['generation'])}  [dim](logprob {r['logprob']:.2f})[/]",
                  highlight=False)
