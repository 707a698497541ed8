"""`msr report [PATH...]`: tables and plots across runs and sweeps, replicates aggregated.

    msr report                                  the newest sweep under outputs/multirun/
    msr report outputs/multirun/train/DATE/TIME --metric test/accuracy --metric val/loss
    msr report 'outputs/train/*/*' --group-by model,optimizer.lr --filter data.name=arith

Reads files only: no torch, and matplotlib only to draw the plots.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from msr.errors import UserError
from msr.report.aggregate import (apply_filters, choose_metrics, direction, make_groups, repeated_replicates,
                                  resolve_key, sort_groups, varying_keys)
from msr.report.collect import collect
from msr.report.paired import compare_with_best
from msr.report.study import plot_study, read_study, study_markdown
from msr.report.write import Report, print_report, write_files, write_markdown


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="msr report", description="Aggregate runs across a sweep and its seeds: one row per group of runs "
        "that differ only in their replicate keys, mean ± sample std of each metric, paired tests, plots.")
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="run folders, sweep folders or globs (default: the newest sweep under outputs/multirun/)")
    p.add_argument("--metric", action="append", default=[], metavar="NAME",
                   help="a metric to report (repeatable; the first sorts the table); default: the sweep's "
                        "objective, then every metric the runs report")
    p.add_argument("--group-by", metavar="KEYS", help="comma-separated config keys that define the groups "
                   "(default: the keys that vary across the runs, less the replicate keys)")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="keep only the runs whose config has KEY=VALUE (repeatable)")
    p.add_argument("--replicates", default="seed,data.fold", metavar="KEYS",
                   help="comma-separated keys whose runs are replicates of one another (default: seed,data.fold)")
    p.add_argument("--out", metavar="DIR", help="where the files go (default: the sweep folder when one sweep is "
                   "given, else ./report)")
    p.add_argument("--bootstrap", type=int, default=2000, metavar="N", help="paired bootstrap resamples (default 2000)")
    p.add_argument("--no-plots", action="store_true", help="write the tables only")
    return p


def comma_list(text: str | None) -> list[str]:
    return [item.strip() for item in (text or "").split(",") if item.strip()]


def build(args: argparse.Namespace) -> tuple[Report, Path, Path | None]:
    replicates = comma_list(args.replicates)
    if args.bootstrap < 1:
        raise UserError(f"--bootstrap {args.bootstrap}: give a number of resamples of at least 1 (default 2000)")
    runs, sweep = collect(args.paths, replicates)
    runs = apply_filters(runs, args.filter)
    if args.group_by is not None:
        keys = [resolve_key(key, runs, "--group-by") for key in comma_list(args.group_by)]
    else:
        keys = varying_keys(runs, replicates)
    metrics = choose_metrics(runs, args.metric)
    goal = direction(metrics[0], runs) if metrics else "maximize"
    groups = sort_groups(make_groups(runs, keys), metrics[0] if metrics else None, goal)
    comparisons, notes = compare_with_best(groups, replicates, args.bootstrap)
    if args.group_by is None:  # grouped by hand, a group may hold any runs
        notes += repeated_replicates(groups, replicates)
    orphans = [run for run in runs if run.notes]
    if orphans:  # one line for all of them: a sweep of evaluations moved away from its training runs
        notes.append(f"{len(orphans)} evaluate run(s) grouped by their own config, as their source run's config "
                     f"was not found (e.g. {orphans[0].folder}: {orphans[0].notes[0]})")
    out = Path(args.out) if args.out else sweep if sweep is not None else Path("report")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder for the report's files")
    return Report(runs, groups, keys, metrics, goal, replicates, comparisons, notes), out, sweep


def main(argv: list[str]) -> int:
    from rich.console import Console

    args = parser().parse_args(argv)
    report, out, sweep = build(args)
    files = write_files(report, out)
    plots, sections = [], []
    if not args.no_plots and report.groups and report.metrics:
        from msr.report.plots import plot_report

        plots = plot_report(out, report.groups, report.keys, report.metrics)
    if (study := read_study(sweep)) is not None:  # an Optuna sweep
        study_plots = [] if args.no_plots else plot_study(out, study)
        sections.append(study_markdown(study, study_plots))
        plots += study_plots
    files.append(write_markdown(report, out, plots, sections))
    console = Console() if sys.stdout.isatty() else Console(width=200)
    print_report(report, console)
    console.print(f"wrote {', '.join(p.name for p in files + plots)} in {out}", markup=False, highlight=False)
    return 0
