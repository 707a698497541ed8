"""Per-example preparation of the real data sets: where their steps and scratchpads come from."""

from __future__ import annotations

from msr.data.scan_grammar import actions_of, structured_target
from msr.errors import UserError

# SCAN's composition words: each one makes the interpreter apply a rule to a sub-command.
SCAN_OPERATORS = frozenset({"and", "after", "twice", "thrice", "around", "opposite"})


def scan(record: dict) -> dict:
    """SCAN (Lake & Baroni, 2018): steps = composition words in the command ("jump" alone: 0)."""
    return {**record, "steps": sum(word in SCAN_OPERATORS for word in record["input"].split())}


def scan_structured(record: dict) -> dict:
    """SCAN with the command's structure marked in the target (msr/data/scan_grammar.py); a file
    whose target is not its command's actions is not SCAN, and is refused."""
    target = structured_target(record["input"])
    if actions_of(target) != " ".join(record["target"].split()):
        raise UserError(f"data.preprocess=scan_structured: the target of {record['input']!r} is not what SCAN's "
                        f"grammar makes of it; use data.preprocess=scan for this file")
    return {**scan(record), "target": target}


def gsm8k(record: dict) -> dict:
    """GSM8K (Cobbe et al., 2021): the solution lines before "#### N" are the scratchpad and the
    steps; N is the answer."""
    solution, _, final = record["target"].rpartition("####")
    lines = [line.strip() for line in solution.strip().splitlines() if line.strip()]
    return {**record, "target": final.strip(), "steps": len(lines), "scratchpad": "\n".join(lines)}


PREPROCESS = {"scan": scan, "scan_structured": scan_structured, "gsm8k": gsm8k}
