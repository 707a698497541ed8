"""Accuracy per task of a mixture (data=mixture), and by steps within each task: the one
computation behind metrics.json's accuracy_by_task and accuracy_by_task_steps, for `msr train`'s
test split and `msr evaluate` alike."""

from __future__ import annotations

from msr.eval.scores import steps_breakdown


def task_breakdown(rows: list[dict], correct: list[bool]) -> dict:
    """{"accuracy_by_task": {task: acc}, "accuracy_by_task_steps": {task: {steps: acc}}}, tasks in
    name order, where the rows carry their `task`; {} otherwise (data of one task)."""
    if not rows or "task" not in rows[0]:
        return {}
    if len(rows) != len(correct):
        raise ValueError(f"{len(rows)} rows but {len(correct)} results")
    results: dict[str, tuple[list[bool], list[int]]] = {}
    for row, ok in zip(rows, correct):
        hits, steps = results.setdefault(row["task"], ([], []))
        hits.append(bool(ok))
        steps.append(row.get("steps", -1))
    tasks = sorted(results)
    return {
        "accuracy_by_task": {t: sum(results[t][0]) / len(results[t][0]) for t in tasks},
        "accuracy_by_task_steps": {t: {k: v["accuracy"] for k, v in steps_breakdown(*results[t]).items()}
                                   for t in tasks},
    }


def flat_task_metrics(split: str, breakdown: dict) -> dict[str, float]:
    """`<split>/accuracy_by_task/<task>` keys for history.jsonl and TensorBoard."""
    return {f"{split}/accuracy_by_task/{t}": v for t, v in breakdown.get("accuracy_by_task", {}).items()}
