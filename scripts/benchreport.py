"""The end of every benchmark script: a rich table, one `RATIO <name> <value>` line per row for
machines to read, and exit code 1 when a checked row falls below the minimum ratio."""

from __future__ import annotations

import argparse
import sys

import torch
from rich.console import Console
from rich.table import Table

MODELS = ("rnn", "gru", "lstm", "transformer")


def add_machine_options(p: argparse.ArgumentParser, min_ratio: float, min_ratio_help: str) -> None:
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--min-ratio", type=float, default=min_ratio, help=min_ratio_help)


def models_and_device(p: argparse.ArgumentParser, args, known=MODELS) -> tuple[list[str], torch.device]:
    """The --models list, checked against `known`, and the device, with --threads applied."""
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    if bad := [m for m in names if m not in known]:
        p.error(f"unknown model(s): {', '.join(bad)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    return names, torch.device(args.device)


def report(title: str, columns: tuple[str, str, str], results: list[dict], digits: int, checked: tuple[str, ...],
           min_ratio: float, shortfall: str, extra: tuple[str, ...] = ()) -> int:
    """`results` rows hold name, params, the two speeds under columns[0] and columns[1], and ratio;
    `extra` names further columns, shown as the rows' strings (blank where a row has none)."""
    first, second, ratio = columns
    table = Table(title=title)
    for col in ("model", "params", *columns, *extra):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in results:
        table.add_row(r["name"], f"{r['params']:,}", f"{r[first]:,.0f}", f"{r[second]:,.0f}", f"{r['ratio']:.{digits}f}",
                      *(r.get(col, "") for col in extra))
    Console(width=None if sys.stdout.isatty() else 160).print(table)
    for r in results:
        print(f"RATIO {r['name']} {r['ratio']:.{digits}f}")
    failed = [r["name"] for r in results if r["name"] in checked and r["ratio"] < min_ratio]
    if failed:
        print(f"FAIL: {shortfall} for {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0
