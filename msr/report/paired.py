"""Is A better than B? A paired comparison of two groups scored on the same test examples.

Runs are paired by their replicate keys (seed s of A with seed s of B) and examples matched by
(input, target); the pairs of every seed are pooled. With b = examples A gets right and B wrong
and c = the other way round, the difference in accuracy is (c - b) / n, its 95% interval the
percentiles of a paired bootstrap over the pooled examples, and the p-value McNemar's exact
two-sided test on b and c.

Each pooled pair is one of three kinds (B gains, B loses, same), so resampling n pairs with
replacement is drawing the three counts from a multinomial: the same distribution as resampling
the examples one by one, in 2,000 draws instead of 2,000 × n.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from msr.report.aggregate import Group, replicate_id


@dataclass
class Comparison:
    a: str  # the reference group (the best by the objective)
    b: str  # the group compared with it
    pairs: int  # runs paired by replicate keys
    examples: int  # paired examples, pooled over the run pairs
    a_only: int  # b of McNemar: A right, B wrong
    b_only: int  # c of McNemar: A wrong, B right
    accuracy_a: float
    accuracy_b: float
    difference: float  # accuracy of B minus accuracy of A
    low: float
    high: float
    p_value: float


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: the binomial(b + c, 1/2) tail at min(b, c), doubled.

    In exact integers; each C(n, i + 1) comes from C(n, i), so 50,000 discordant pairs take a
    fraction of a second where math.comb for each term would take minutes."""
    n = b + c
    if n == 0:
        return 1.0
    term = tail = 1  # C(n, 0)
    for i in range(min(b, c)):
        term = term * (n - i) // (i + 1)
        tail += term
    return min(1.0, 2 * tail / 2 ** n)  # int / int: correctly rounded, however large


def bootstrap_interval(a_only: int, b_only: int, n: int, resamples: int, seed: int = 0) -> tuple[float, float]:
    """Percentile 95% interval of the accuracy difference (B - A) over paired resamples of n examples."""
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, [a_only / n, b_only / n, (n - a_only - b_only) / n], size=resamples)
    differences = (counts[:, 1] - counts[:, 0]) / n
    low, high = np.percentile(differences, [2.5, 97.5])
    return float(low), float(high)


@functools.lru_cache(maxsize=None)
def correctness(folder: Path) -> dict[tuple, bool] | None:
    """Per-example correctness from predictions.jsonl, keyed by (input, target, occurrence), or
    None when the run has none that reads."""
    path = folder / "predictions.jsonl"
    if not path.is_file():
        return None
    seen: Counter = Counter()
    found = {}
    try:
        # one JSON array for the whole file: a single decoder call, several times faster than one a line
        rows = json.loads("[" + ",".join(line for line in path.read_text().splitlines() if line.strip()) + "]")
        for row in rows:
            key = (row["input"], row["target"])
            found[(*key, seen[key])] = bool(row["correct"])
            seen[key] += 1
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return found


def run_pairs(a: Group, b: Group, replicates: list[str]) -> list[tuple[dict, dict]]:
    """Correctness of the runs of A and B with the same replicate keys (the k-th of a seed with
    the k-th), where both have predictions on identical examples."""
    def by_replicate(group: Group) -> dict[tuple, list[dict]]:
        found: dict[tuple, list[dict]] = {}
        for run in sorted(group.runs, key=lambda r: str(r.folder)):
            scored = correctness(run.folder)
            if scored is not None:
                found.setdefault(replicate_id(run, replicates), []).append(scored)
        return found

    left, right = by_replicate(a), by_replicate(b)
    return [(x, y) for rep in left if rep in right for x, y in zip(left[rep], right[rep]) if x.keys() == y.keys()]


def compare(a: Group, b: Group, replicates: list[str], resamples: int) -> Comparison | None:
    pairs = run_pairs(a, b, replicates)
    if not pairs:
        return None
    n = a_right = b_right = a_only = b_only = 0
    for x, y in pairs:
        for key, right in x.items():
            n += 1
            a_right += right
            b_right += y[key]
            a_only += right and not y[key]
            b_only += y[key] and not right
    low, high = bootstrap_interval(a_only, b_only, n, resamples)
    return Comparison(a.label, b.label, len(pairs), n, a_only, b_only, a_right / n, b_right / n,
                      (b_only - a_only) / n, low, high, mcnemar_exact(a_only, b_only))


def compare_with_best(groups: list[Group], replicates: list[str], resamples: int) -> tuple[list[Comparison], list[str]]:
    """The best group (groups come sorted, best first) against each other one; and a line for
    what could not be compared and why."""
    if len(groups) < 2:
        return [], []
    unscored = [g.label for g in groups if not any(correctness(r.folder) is not None for r in g.runs)]
    best = groups[0]
    if best.label in unscored:
        return [], [f"no paired comparison: the best group ({best.label}) has no predictions.jsonl"]
    comparisons, unmatched = [], []
    for other in groups[1:]:
        if other.label in unscored:
            continue
        found = compare(best, other, replicates, resamples)
        (comparisons.append(found) if found else unmatched.append(other.label))
    notes = []
    if unscored:
        notes.append(f"no paired comparison for {len(unscored)} group(s) without predictions.jsonl: "
                     f"{'; '.join(unscored)}")
    if unmatched:
        notes.append(f"not scored on the same examples (or no common {'/'.join(replicates)}) as the best group, "
                     f"so not compared: {'; '.join(unmatched)}")
    return comparisons, notes
