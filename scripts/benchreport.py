"""The end of every benchmark script: a rich table, one `RATIO <name> <value>` line per row for
machines to read, and exit code 1 when a checked row falls below the minimum ratio."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table


def report(title: str, columns: tuple[str, str, str], results: list[dict], digits: int, checked: tuple[str, ...],
           min_ratio: float, shortfall: str) -> int:
    """`results` rows hold name, params, the two speeds under columns[0] and columns[1], and ratio."""
    first, second, ratio = columns
    table = Table(title=title)
    for col in ("model", "params", *columns):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in results:
        table.add_row(r["name"], f"{r['params']:,}", f"{r[first]:,.0f}", f"{r[second]:,.0f}", f"{r['ratio']:.{digits}f}")
    Console().print(table)
    for r in results:
        print(f"RATIO {r['name']} {r['ratio']:.{digits}f}")
    failed = [r["name"] for r in results if r["name"] in checked and r["ratio"] < min_ratio]
    if failed:
        print(f"FAIL: {shortfall} for {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0
