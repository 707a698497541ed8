"""The report's plots (PNG): each metric against each numeric grouping key, accuracy by
reasoning steps per group, and validation curves per group, each a mean over the group's seeds
with its spread. matplotlib loads here only, on the Agg backend (no display needed).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

from msr.eval.scores import wilson_interval
from msr.report.aggregate import Group, mean_std
from msr.runs import file_mode

CURVES = ("val/loss", "val/accuracy")
MAX_LINES = 10  # more lines than the palette has colours read as one smear: the best ones are drawn


def best_of(groups: list[Group], title: str) -> tuple[list[Group], str]:
    """The first MAX_LINES groups (they come best first), and the title saying so."""
    if len(groups) <= MAX_LINES:
        return groups, title
    return groups[:MAX_LINES], f"{title}, the {MAX_LINES} best of {len(groups)} groups"


def plot_report(out: Path, groups: list[Group], keys: list[str], metrics: list[str]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    written = [plot_against(out, groups, key, metrics) for key in numeric_keys(groups, keys)]
    written.append(plot_steps(out, groups))
    written.append(plot_curves(out, groups))
    return [path for path in written if path is not None]


def numeric_keys(groups: list[Group], keys: list[str]) -> list[str]:
    def numeric(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    found = []
    for key in keys:
        values = [g.values[key] for g in groups if key in g.values]
        if len(set(values)) > 1 and all(numeric(v) for v in values):
            found.append(key)
    return found


def save(figure, path: Path) -> Path:
    """savefig to a temporary name beside `path`, then rename: never half a PNG."""
    import matplotlib.pyplot as plt

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.fchmod(fd, file_mode())  # mkstemp's 0600 would make the plot private
    os.close(fd)
    try:
        figure.tight_layout()
        figure.savefig(tmp, dpi=100)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        plt.close(figure)
    return path


def panels(count: int, title: str, width: float = 4.5):
    import matplotlib.pyplot as plt

    columns = min(count, 3)
    rows = math.ceil(count / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(width * columns, 3.4 * rows), squeeze=False)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    figure.suptitle(title)
    return figure, list(axes.flat[:count])


def legend(ax, count: int) -> None:
    if count > 1:
        # beside the plot: it hides no line, and loc="best" would search every point for a free corner
        ax.legend(fontsize="x-small" if count > 8 else "small", loc="upper left", bbox_to_anchor=(1.02, 1.0))


def plot_against(out: Path, groups: list[Group], key: str, metrics: list[str]) -> Path | None:
    """Each metric against `key`, one line per combination of the other grouping keys; error bars
    are the sample std over the seeds."""
    from matplotlib.ticker import NullFormatter

    lines: dict[str, list[Group]] = {}
    for group in groups:
        if key in group.values:
            rest = " ".join(f"{k}={v}" for k, v in group.values.items() if k != key) or key
            lines.setdefault(rest, []).append(group)
    title = f"metrics against {key} (mean ± std over seeds)"
    if len(lines) > MAX_LINES:  # groups come best first, so the first lines hold the best groups
        title += f", the {MAX_LINES} lines of the best groups of {len(lines)}"
        lines = dict(list(lines.items())[:MAX_LINES])
    figure, axes = panels(len(metrics), title)
    xs = [g.values[key] for line in lines.values() for g in line]
    for ax, metric in zip(axes, metrics):
        for label, line in lines.items():
            points = sorted((g.values[key], *g.stats(metric)) for g in line if g.stats(metric)[0] is not None)
            if points:
                ax.errorbar([p[0] for p in points], [p[1] for p in points], yerr=[p[2] or 0.0 for p in points],
                            marker="o", capsize=3, label=label)
        if min(xs) > 0 and max(xs) / min(xs) >= 100:  # values that span two decades or more
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # labelled minor ticks are most of the drawing time
        ax.set(xlabel=key, ylabel=metric)
        ax.grid(alpha=0.3)
    legend(axes[-1], len(lines))
    return save(figure, out / f"vs_{key}.png")


def steps_curve(group: Group) -> tuple[list[tuple[int, float, float, float]], str]:
    """(steps, accuracy, low, high) of a group, and what the band is: pooled counts and their
    Wilson 95% interval when every run has steps_detail, else the mean over runs ± the std."""
    details = [run.record.get("steps_detail") for run in group.runs]
    if all(details):
        pooled: dict[int, list[int]] = {}
        for detail in details:
            for steps, cell in detail.items():
                counts = pooled.setdefault(int(steps), [0, 0])
                counts[0] += cell["correct"]
                counts[1] += cell["n"]
        points = [(s, hits / n, *wilson_interval(hits, n)) for s, (hits, n) in sorted(pooled.items()) if n]
        return points, "Wilson 95% of pooled counts"
    by_steps: dict[int, list[float]] = {}
    for run in group.runs:
        for steps, accuracy in (run.record.get("accuracy_by_steps") or {}).items():
            if isinstance(accuracy, (int, float)) and str(steps).lstrip("-").isdigit():
                by_steps.setdefault(int(steps), []).append(accuracy)
    points = [(s, m, m - (sd or 0.0), m + (sd or 0.0)) for s, values in sorted(by_steps.items())
              for m, sd in [mean_std(values)]]
    return points, "± std over seeds"


def plot_steps(out: Path, groups: list[Group]) -> Path | None:
    from matplotlib.ticker import MaxNLocator

    groups, title = best_of(groups, "accuracy by reasoning steps")
    curves = {g.label: steps_curve(g) for g in groups}
    curves = {label: found for label, found in curves.items() if found[0]}
    if not curves:
        return None
    bands = " or ".join(sorted({band for _, band in curves.values()}))
    figure, (ax,) = panels(1, f"{title}\n(band: {bands})", width=7.0)
    for label, (points, _) in curves.items():
        steps, accuracy, low, high = zip(*points)
        ax.plot(steps, accuracy, marker="o", label=label)
        ax.fill_between(steps, low, high, alpha=0.2)
    ax.set(xlabel="reasoning steps", ylabel="accuracy", ylim=(-0.02, 1.02))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    legend(ax, len(curves))
    return save(figure, out / "accuracy_by_steps.png")


def read_history(folder: Path) -> list[dict]:
    path = folder / "history.jsonl"
    rows = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue  # a line cut short by a kill
    return rows


def group_curve(group: Group, metric: str) -> list[tuple[int, float, float]]:
    """(step, mean, std) of `metric` over the group's runs, at each step some run logged it."""
    at: dict[int, list[float]] = {}
    for run in group.runs:
        for row in read_history(run.folder):
            if isinstance(row.get(metric), (int, float)) and "step" in row:
                at.setdefault(row["step"], []).append(row[metric])
    return [(step, m, sd or 0.0) for step, values in sorted(at.items()) for m, sd in [mean_std(values)]]


def plot_curves(out: Path, groups: list[Group]) -> Path | None:
    groups, title = best_of(groups, "training curves (mean ± std over seeds)")
    curves = {(g.label, metric): group_curve(g, metric) for g in groups for metric in CURVES}
    if not any(curves.values()):
        return None
    figure, axes = panels(len(CURVES), title)
    for ax, metric in zip(axes, CURVES):
        for group in groups:
            points = curves[(group.label, metric)]
            if points:
                steps, mean, sd = zip(*points)
                ax.plot(steps, mean, label=group.label)
                ax.fill_between(steps, [m - s for m, s in zip(mean, sd)], [m + s for m, s in zip(mean, sd)], alpha=0.2)
        ax.set(xlabel="step", ylabel=metric)
        ax.grid(alpha=0.3)
    legend(axes[-1], len(groups))
    return save(figure, out / "training_curves.png")
