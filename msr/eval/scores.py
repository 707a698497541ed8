"""Scores for metrics.json beyond loss and exact match: how accuracy falls with the number of
reasoning steps (with confidence intervals and a compounding-error fit), per-class reports for
label-valued answers, BLEU/chrF/TER for free-text answers, and the diversity of generated text.

Everything here is a pure function of plain lists and dicts and returns plain ints, floats,
strings, lists and dicts, so results go straight into JSON. sacrebleu and matplotlib are imported
inside the functions that need them, so importing this module stays cheap.
"""

from __future__ import annotations

import math
import os
from collections import Counter

import numpy as np

OTHER = "<other>"  # confusion-matrix column for predictions outside the label set


def wilson_interval(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion hits/n.

    Unlike the normal approximation p ± z·sqrt(p(1-p)/n), it does not collapse to a zero-width
    interval at 0/n or n/n, and it stays inside [0, 1] for small n.
    """
    if not 0 <= hits <= n:
        raise ValueError(f"need 0 <= hits <= n, got hits={hits}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = hits / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # At 0/n and n/n the bound is exactly 0 or 1; set it so rounding cannot leave 1e-17 behind.
    low = 0.0 if hits == 0 else max(0.0, centre - half)
    high = 1.0 if hits == n else min(1.0, centre + half)
    return low, high


def steps_breakdown(correct: list[bool], steps: list[int]) -> dict[str, dict]:
    """Exact-match accuracy for each number of reasoning steps, with a 95% Wilson interval.

    Keyed by str(k) in increasing k, so the JSON reads in order; negative steps mean the task
    does not know the count, and those examples are left out.
    """
    if len(correct) != len(steps):
        raise ValueError(f"{len(correct)} results but {len(steps)} step counts")
    totals: dict[int, list[int]] = {}
    for ok, k in zip(correct, steps):
        if k >= 0:
            hits_n = totals.setdefault(int(k), [0, 0])
            hits_n[0] += bool(ok)
            hits_n[1] += 1
    return {
        str(k): {"n": n, "correct": hits, "accuracy": hits / n, "ci95": list(wilson_interval(hits, n))}
        for k, (hits, n) in sorted(totals.items())
    }


CHANCE_MARGIN = 0.05  # accuracies this close to chance at every step count: nothing to fit
MIN_R2 = 0.5  # a fit explaining less of the variance than this describes noise, not compounding


def compounding_fit(by_steps: dict[str, dict], chance: float | None = None) -> dict | None:
    """Fit acc(k) ≈ a·p^k: each step succeeds independently with probability p.

    `chance` is what always giving the training split's most frequent answer scores. When every
    step count's accuracy is within CHANCE_MARGIN of it (or of 0), or the fit's R² is below MIN_R2, a p
    would be read as a per-step reliability that the data does not show: the result then says
    "no_fit" and why, and carries no a, p or predictions.

    p is the per-step reliability and a the accuracy a zero-step task would have. The fit is
    weighted least squares on the accuracies themselves, not on their logs, because an accuracy
    can be 0; each step count weighs as many examples as it has. For a fixed p the best a is
    closed-form, so only p is searched: a grid over (0, 1], then golden-section refinement.
    a is left unconstrained. None when fewer than two step counts have examples.
    """
    points = sorted((int(k), row["n"], row["accuracy"]) for k, row in by_steps.items() if row["n"] > 0)
    if len(points) < 2:
        return None
    k = np.array([kk for kk, _, _ in points], dtype=float)
    w = np.array([n for _, n, _ in points], dtype=float)
    y = np.array([acc for _, _, acc in points], dtype=float)

    grid = np.linspace(0.0, 1.0, 2001)[1:]
    sse = np.array([_sse_and_a(p, k, w, y)[0] for p in grid])
    # On ties (e.g. all accuracies 0, where any p fits) prefer the largest p: no compounding.
    best = len(grid) - 1 - int(np.argmin(sse[::-1]))
    step = grid[1] - grid[0]
    p = _golden_section(lambda q: _sse_and_a(q, k, w, y)[0],
                        max(grid[best] - step, 1e-12), min(grid[best] + step, 1.0))
    if not _sse_and_a(p, k, w, y)[0] < sse[best]:  # keep the grid point (say p = 1) unless beaten
        p = float(grid[best])
    error, a = _sse_and_a(p, k, w, y)

    mean = np.sum(w * y) / np.sum(w)
    total = float(np.sum(w * (y - mean) ** 2))
    scale = float(np.sum(w * y * y)) + float(np.sum(w))  # for "zero up to rounding"
    if total <= 1e-12 * scale:  # every step count has the same accuracy: nothing to explain
        r2 = 1.0 if error <= 1e-12 * scale else 0.0
    else:
        r2 = 1.0 - error / total
    steps = [int(kk) for kk in k]
    reason = None
    if chance is not None and all(abs(acc - chance) <= CHANCE_MARGIN for acc in y):
        reason = f"every step count's accuracy is within {CHANCE_MARGIN} of chance ({chance:.3f})"
    elif all(acc <= CHANCE_MARGIN for acc in y):
        reason = f"accuracy is at most {CHANCE_MARGIN} at every step count"
    elif r2 < MIN_R2:
        reason = f"the fit explains too little (R² {r2:.3f} < {MIN_R2})"
    if reason is not None:
        return {"no_fit": reason, "r2": float(r2), "chance": chance, "steps": steps}
    return {
        "a": float(a), "p": float(p), "r2": float(r2), "chance": chance, "steps": steps,
        "predicted": {str(kk): float(a * p**kk) for kk in steps},
    }


def describe_fit(fit: dict) -> str:
    chance = f"; chance {fit['chance']:.3f}" if fit.get("chance") is not None else ""
    if "no_fit" in fit:
        return f"no fit: {fit['no_fit']}"
    return f"accuracy ≈ {fit['a']:.3f} · {fit['p']:.3f}^steps (weighted R² {fit['r2']:.3f}{chance})"


def _sse_and_a(p: float, k: np.ndarray, w: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Weighted squared error of the best a·p^k for this p, and that a."""
    f = p**k
    a = np.sum(w * y * f) / np.sum(w * f * f)
    return float(np.sum(w * (y - a * f) ** 2)), float(a)


def _golden_section(f, low: float, high: float, tol: float = 1e-9) -> float:
    """Minimum of a unimodal f on [low, high]."""
    ratio = (math.sqrt(5) - 1) / 2
    c, d = high - ratio * (high - low), low + ratio * (high - low)
    fc, fd = f(c), f(d)
    while high - low > tol:
        if fc <= fd:
            high, d, fd = d, c, fc
            c = high - ratio * (high - low)
            fc = f(c)
        else:
            low, c, fc = c, d, fd
            d = low + ratio * (high - low)
            fd = f(d)
    return (low + high) / 2


def classification_report(targets: list[str], predictions: list[str]) -> dict:
    """Per-class precision, recall and F1, macro and micro F1, accuracy and the confusion matrix.

    The labels are the targets' values. A prediction outside them is wrong: it is a false
    negative for the true class and a false positive for no label, and it is counted in an extra
    "<other>" confusion column. For that reason micro F1 equals accuracy only when every
    prediction is a label; otherwise it is higher (the stray predictions add no false positives).
    """
    if len(targets) != len(predictions):
        raise ValueError(f"{len(targets)} targets but {len(predictions)} predictions")
    labels = sorted(set(targets))
    columns = labels + ([OTHER] if any(p not in labels for p in predictions) else [])
    column_of = {c: j for j, c in enumerate(columns)}
    row_of = {c: i for i, c in enumerate(labels)}
    matrix = [[0] * len(columns) for _ in labels]
    for t, p in zip(targets, predictions):
        matrix[row_of[t]][column_of.get(p, column_of.get(OTHER))] += 1

    per_class = {}
    tp_sum = fp_sum = fn_sum = 0
    for i, label in enumerate(labels):
        tp = matrix[i][i]
        predicted = sum(row[i] for row in matrix)  # column i: everything predicted as this label
        support = sum(matrix[i])
        precision = tp / predicted if predicted else 0.0
        recall = tp / support
        per_class[label] = {"precision": precision, "recall": recall,
                            "f1": _f1(precision, recall), "support": support}
        tp_sum, fp_sum, fn_sum = tp_sum + tp, fp_sum + predicted - tp, fn_sum + support - tp

    micro = 2 * tp_sum / (2 * tp_sum + fp_sum + fn_sum) if tp_sum else 0.0
    return {
        "per_class": per_class,
        "macro_f1": sum(c["f1"] for c in per_class.values()) / max(len(labels), 1),
        "micro_f1": micro,
        "accuracy": tp_sum / max(len(targets), 1),
        "confusion": {"labels": labels, "columns": columns, "matrix": matrix},
    }


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def sacrebleu_scores(hypotheses: list[str], references: list[str]) -> dict:
    """Corpus BLEU, chrF and TER with sacrebleu's defaults, one reference per hypothesis.

    The signatures record the settings (tokeniser, smoothing, version) so that a score can be
    compared with another only when they match.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    from sacrebleu.metrics import BLEU, CHRF, TER  # ~0.1 s to import: only when scoring text

    scores, signatures = {}, {}
    for name, metric in (("bleu", BLEU()), ("chrf", CHRF()), ("ter", TER())):
        scores[name] = float(metric.corpus_score(hypotheses, [references]).score)
        signatures[name] = str(metric.get_signature())
    return {**scores, "signatures": signatures}


def diversity(texts: list[str]) -> dict:
    """How varied generated text is, on whitespace tokens.

    distinct_n (Li et al. 2016): unique n-grams / n-grams over the whole corpus; n-grams do not
    cross text boundaries. type_token_ratio: unique tokens / tokens, which is distinct_1 under
    another name, kept because both names are in use. repetition_rate (Welleck et al. 2019,
    seq-rep-4): within each text, the fraction of 4-grams that repeat an earlier one, averaged
    over the texts long enough to have a 4-gram.
    """
    tokenised = [text.split() for text in texts]
    repetition = [1 - len(set(grams)) / len(grams)
                  for grams in (_ngrams(tokens, 4) for tokens in tokenised) if grams]
    distinct_1 = _distinct(tokenised, 1)
    return {
        "distinct_1": distinct_1,
        "distinct_2": _distinct(tokenised, 2),
        "type_token_ratio": distinct_1,
        "repetition_rate": sum(repetition) / len(repetition) if repetition else 0.0,
    }


def _ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def _distinct(tokenised: list[list[str]], n: int) -> float:
    counts = Counter(gram for tokens in tokenised for gram in _ngrams(tokens, n))
    total = sum(counts.values())
    return len(counts) / total if total else 0.0


def plot_accuracy_by_steps(by_steps: dict, fit: dict | None, path: str | os.PathLike, title: str) -> None:
    """Accuracy against reasoning steps with 95% intervals and, if given, the a·p^k fit, as PNG."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on training machines
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    steps = [int(k) for k in by_steps]
    accuracy = [row["accuracy"] for row in by_steps.values()]
    below = [row["accuracy"] - row["ci95"][0] for row in by_steps.values()]
    above = [row["ci95"][1] - row["accuracy"] for row in by_steps.values()]

    fig, ax = plt.subplots(figsize=(6, 4))
    try:
        ax.errorbar(steps, accuracy, yerr=[below, above], fmt="o", capsize=3, label="accuracy (95% CI)")
        if fit is not None and "p" in fit:
            k = np.linspace(min(fit["steps"]), max(fit["steps"]), 200)
            ax.plot(k, fit["a"] * fit["p"] ** k, "--",
                    label=f"fit a·p$^k$: a = {fit['a']:.3f}, p = {fit['p']:.4f}")
        if fit is not None and fit.get("chance") is not None:
            ax.axhline(fit["chance"], color="grey", linestyle=":", label=f"chance ({fit['chance']:.3f})")
        ax.set_ylim(0, 1.05)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("reasoning steps")
        ax.set_ylabel("exact-match accuracy")
        ax.set_title(title)
        ax.legend(loc="best")
        fig.savefig(path, dpi=120, format="png")
    finally:
        plt.close(fig)
