"""What a report shows and writes: the table of groups (printed with rich, and as report.csv and
report.md), the runs left out of the means, the per-run listing runs.csv and the paired
comparisons (comparisons.csv). Every file is written whole or not at all (atomic_write).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

from msr.report.aggregate import Group
from msr.report.collect import Run
from msr.report.paired import Comparison
from msr.runs import atomic_write


@dataclass
class Report:
    runs: list[Run]
    groups: list[Group]  # best first
    keys: list[str]  # the grouping keys
    metrics: list[str]  # the first is the objective
    direction: str
    replicates: list[str]
    comparisons: list[Comparison] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def left_out(self) -> list[Run]:
        return [run for run in self.runs if not run.completed]

    @property
    def replicates_present(self) -> list[str]:
        """The replicate keys the runs have (data.fold only where folds were used)."""
        return [k for k in self.replicates if any(k in run.config for run in self.runs)]


def number(value: float | None, scale: float | None = None) -> str:
    """4 decimals for accuracies and losses, whole numbers for throughputs, exponents for the tiny;
    by the magnitude of `scale` (a std is written as its mean is)."""
    if value is None:
        return ""
    scale = abs(value if scale is None else scale)
    if math.isnan(value) or math.isnan(scale) or scale == 0 or 1e-3 <= scale < 1000:
        return f"{value:.4f}"
    return f"{value:,.0f}" if scale >= 1000 else f"{value:.3e}"


def mean_std_text(group: Group, metric: str) -> str:
    mean, std = group.stats(metric)
    return "" if mean is None else number(mean) + ("" if std is None else f" ± {number(std, mean)}")


def shown(value) -> str:
    return "" if value is None else str(value)


def group_rows(report: Report) -> tuple[list[str], list[list[str]]]:
    header = [*report.keys, "n", *report.metrics]
    rows = [[shown(g.values.get(k)) for k in report.keys] + [str(len(g.runs))]
            + [mean_std_text(g, m) for m in report.metrics] for g in report.groups]
    return header, rows


def left_out_rows(report: Report) -> tuple[list[str], list[list[str]]]:
    header = ["folder", "status", *report.keys, "reason"]
    rows = [[str(r.folder), r.status, *(shown(r.config.get(k)) for k in report.keys), shown(r.record.get("reason"))]
            for r in report.left_out]
    return header, rows


COMPARISON_HEADER = ["reference (A)", "compared (B)", "run pairs", "examples", "A right, B wrong", "A wrong, B right",
                     "accuracy A", "accuracy B", "B - A", "95% CI", "McNemar p"]


def comparison_rows(report: Report) -> list[list[str]]:
    return [[c.a, c.b, str(c.pairs), str(c.examples), str(c.a_only), str(c.b_only), f"{c.accuracy_a:.4f}",
             f"{c.accuracy_b:.4f}", f"{c.difference:+.4f}", f"[{c.low:+.4f}, {c.high:+.4f}]", f"{c.p_value:.4g}"]
            for c in report.comparisons]


def title(report: Report) -> str:
    objective = f"; sorted by {report.metrics[0]} ({report.direction})" if report.metrics else ""
    completed = len(report.runs) - len(report.left_out)
    return (f"{len(report.runs)} runs ({completed} completed) in {len(report.groups)} groups, replicates over "
            f"{', '.join(report.replicates_present) or 'nothing'}{objective}")


def print_report(report: Report, console) -> None:
    from rich.table import Table

    def show(heading: str, header: list[str], rows: list[list[str]]) -> None:
        console.print(heading, markup=False, highlight=False)  # a line of its own: a table's title wraps at its width
        table = Table(*header)
        for row in rows:
            table.add_row(*row)
        console.print(table)

    show(title(report), *group_rows(report))
    if report.left_out:
        show("not averaged in (not completed):", *left_out_rows(report))
    if report.comparisons:
        show("paired comparisons with the best group (B - A in accuracy on the same examples):", COMPARISON_HEADER,
             comparison_rows(report))
    for note in report.notes:
        console.print(note, markup=False, highlight=False)


def csv_text(header: list[str], rows: list[list]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    def cells(row: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |"

    return "\n".join([cells(header), cells(["---"] * len(header)), *map(cells, rows)]) + "\n"


def report_csv(report: Report) -> str:
    header = [*report.keys, "n", *(f"{m}_{s}" for m in report.metrics for s in ("mean", "std"))]
    rows = [[shown(g.values.get(k)) for k in report.keys] + [len(g.runs)]
            + [shown(v) for m in report.metrics for v in g.stats(m)] for g in report.groups]
    return csv_text(header, rows)


def runs_csv(report: Report) -> str:
    label = {id(run): g.label for g in report.groups for run in g.runs}
    extra = [k for k in report.replicates_present if k not in report.keys]
    header = ["folder", "command", "status", "reason", "group", *report.keys, *extra, *report.metrics]
    rows = [[str(r.folder), shown(r.record.get("command")), r.status, shown(r.record.get("reason")),
             label.get(id(r), ""), *(shown(r.config.get(k)) for k in [*report.keys, *extra]),
             *(shown(r.value(m)) for m in report.metrics)] for r in report.runs]
    return csv_text(header, rows)


def comparisons_csv(report: Report) -> str:
    header = ["a", "b", "run_pairs", "examples", "a_right_b_wrong", "a_wrong_b_right", "accuracy_a", "accuracy_b",
              "difference", "ci95_low", "ci95_high", "mcnemar_p"]
    rows = [[c.a, c.b, c.pairs, c.examples, c.a_only, c.b_only, c.accuracy_a, c.accuracy_b, c.difference, c.low,
             c.high, c.p_value] for c in report.comparisons]
    return csv_text(header, rows)


def report_markdown(report: Report, plots: list[Path], extra: list[str] = ()) -> str:
    """Sections separated by a blank line: the groups, the runs left out, the comparisons, notes,
    `extra` sections (an Optuna study's), the other plots."""
    sections = [f"# Report\n\n{title(report)}; each metric is the mean ± sample std (ddof 1) over a group's runs.\n\n"
                + markdown_table(*group_rows(report))]
    if report.left_out:
        sections.append("## Not averaged in (not completed)\n\n" + markdown_table(*left_out_rows(report)))
    if report.comparisons:
        paired_by = ", ".join(report.replicates_present) or "their order"
        sections.append("## Paired comparisons with the best group\n\n"
                        f"B - A in accuracy on the same test examples (runs paired by {paired_by}, examples pooled "
                        "over the pairs); paired bootstrap 95% interval; McNemar's exact two-sided p-value.\n\n"
                        + markdown_table(COMPARISON_HEADER, comparison_rows(report)))
    if report.notes:
        sections.append("".join(f"- {note}\n" for note in report.notes))
    sections += extra
    shown = "".join(extra)
    if rest := [p for p in plots if f"({p.name})" not in shown]:
        sections.append("## Plots\n\n" + "".join(f"![{p.stem}]({p.name})\n" for p in rest))
    return "\n".join(sections)


def write_files(report: Report, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = {"report.csv": report_csv(report), "runs.csv": runs_csv(report), "comparisons.csv": comparisons_csv(report)}
    for name, text in files.items():
        atomic_write(out / name, lambda f, text=text: f.write(text))
    return [out / name for name in files]


def write_markdown(report: Report, out: Path, plots: list[Path], extra: list[str] = ()) -> Path:
    text = report_markdown(report, plots, extra)
    atomic_write(out / "report.md", lambda f: f.write(text))
    return out / "report.md"
