"""Scores: BLEU/chrF/TER agree with sacrebleu's command line, Wilson intervals, accuracy by steps,
the compounding-error fit, classification reports, diversity and the accuracy-by-steps plot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest

from msr.eval.scores import (
    steps_breakdown, classification_report, compounding_fit, diversity, plot_accuracy_by_steps,
    sacrebleu_scores, wilson_interval,
)

HYPOTHESES = [
    "the cat sat on the mat .",
    "a quick brown fox jumps over the lazy dog",
    "It is raining , so we stayed at home.",
    "seven plus five is twelve",
    "completely unrelated words here",
]
REFERENCES = [
    "the cat sat on the mat .",
    "the quick brown fox jumped over the lazy dog",
    "It was raining, so we stayed home.",
    "seven plus five equals twelve",
    "the answer is four",
]


def test_text_scores_equal_the_sacrebleu_command_line(tmp_path):
    refs, hyps = tmp_path / "refs.txt", tmp_path / "hyps.txt"
    refs.write_text("\n".join(REFERENCES) + "\n")
    hyps.write_text("\n".join(HYPOTHESES) + "\n")
    # -b alone prints a JSON list rounded to 1 decimal; -w 4 widens it, -f text gives one per line.
    env = {k: v for k, v in os.environ.items() if k != "SACREBLEU_FORMAT"}
    out = subprocess.run([sys.executable, "-m", "sacrebleu", str(refs), "-i", str(hyps),
                          "-m", "bleu", "chrf", "ter", "-b", "-w", "4", "-f", "text"],
                         capture_output=True, text=True, check=True, env=env, timeout=60).stdout
    cli = [float(line) for line in out.split()]
    ours = sacrebleu_scores(HYPOTHESES, REFERENCES)
    assert len(cli) == 3
    for name, expected in zip(["bleu", "chrf", "ter"], cli):
        assert ours[name] == pytest.approx(expected, abs=1e-3), name
    assert 0 < ours["bleu"] < 100 and 0 < ours["ter"]  # imperfect, so neither trivial end
    for name in ["bleu", "chrf", "ter"]:
        assert "nrefs:1" in ours["signatures"][name]
    json.dumps(ours)


def test_wilson_interval_matches_hand_computed_values():
    # 8/10, z = 1.96: centre (0.8 + 0.19208) / 1.38416 = 0.71680,
    # half-width 1.96 / 1.38416 * sqrt(0.016 + 0.009604) = 0.22658.
    low, high = wilson_interval(8, 10)
    assert (round(low, 3), round(high, 3)) == (0.490, 0.943)
    # 0/10: the lower bound is exactly 0; upper = 2 * 0.19208 / 1.38416 = 0.27754.
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.27754, abs=1e-4)
    low, high = wilson_interval(10, 10)
    assert high == 1.0 and low == pytest.approx(1 - 0.27754, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_accuracy_by_steps_counts_in_step_order_and_skips_unknown():
    correct = [True, False, True, True, False, True, True]
    steps = [10, 2, 2, -1, -1, 10, 3]
    table = steps_breakdown(correct, steps)
    assert list(table) == ["2", "3", "10"]  # numeric order, not string order
    assert table["2"]["n"] == 2 and table["2"]["correct"] == 1 and table["2"]["accuracy"] == 0.5
    assert table["3"] == {"n": 1, "correct": 1, "accuracy": 1.0, "ci95": list(wilson_interval(1, 1))}
    assert table["10"]["n"] == 2 and table["10"]["accuracy"] == 1.0
    assert sum(row["n"] for row in table.values()) == 5  # the two -1s are left out
    json.dumps(table)


def _table(accuracies: dict[int, float], n: int) -> dict[str, dict]:
    return {str(k): {"n": n, "correct": round(acc * n), "accuracy": acc, "ci95": [0.0, 1.0]}
            for k, acc in accuracies.items()}


def test_compounding_fit_recovers_exact_parameters():
    fit = compounding_fit(_table({k: 0.9 * 0.8**k for k in range(1, 9)}, n=100))
    assert fit["p"] == pytest.approx(0.8, abs=1e-4)
    assert fit["a"] == pytest.approx(0.9, abs=1e-4)
    assert fit["r2"] == pytest.approx(1.0, abs=1e-8)
    assert fit["steps"] == list(range(1, 9))
    assert fit["predicted"]["3"] == pytest.approx(0.9 * 0.8**3, abs=1e-4)
    json.dumps(fit)


def test_compounding_fit_recovers_p_from_noisy_accuracies():
    rng = np.random.default_rng(0)
    n = 2000
    accuracies = {k: rng.binomial(n, 0.95 * 0.85**k) / n for k in range(1, 11)}
    fit = compounding_fit(_table(accuracies, n))
    assert abs(fit["p"] - 0.85) < 0.02
    assert abs(fit["a"] - 0.95) < 0.05
    assert fit["r2"] > 0.99


def test_compounding_fit_handles_flat_and_degenerate_tables():
    assert compounding_fit(_table({3: 0.5}, n=50)) is None
    assert compounding_fit({}) is None
    flat = compounding_fit(_table({1: 0.7, 2: 0.7, 3: 0.7}, n=10))
    assert flat["p"] == pytest.approx(1.0, abs=1e-6) and flat["a"] == pytest.approx(0.7)
    assert flat["r2"] == 1.0
    # Accuracies of 0 are fine: the fit is on accuracies, not their logs.
    zeros = compounding_fit(_table({1: 0.5, 2: 0.0, 3: 0.0}, n=10))
    assert 0 < zeros["p"] <= 1 and np.isfinite(zeros["a"])
    # All zero: every p fits equally well, and none says anything: no fit, and why.
    nothing = compounding_fit(_table({1: 0.0, 2: 0.0}, n=10))
    assert "p" not in nothing and "at most 0.05 at every step count" in nothing["no_fit"]


def test_classification_report_on_a_hand_worked_example():
    targets = ["cat", "cat", "cat", "dog", "dog", "fox", "fox", "fox"]
    predictions = ["cat", "cat", "dog", "dog", "cat", "fox", "fox", "bird"]
    # Confusion (rows true, columns predicted):  cat dog fox <other>
    #   cat                                       2   1   0    0
    #   dog                                       1   1   0    0
    #   fox                                       0   0   2    1   ("bird" is not a label)
    # cat: P = 2/3, R = 2/3, F1 = 2/3
    # dog: P = 1/2, R = 1/2, F1 = 1/2
    # fox: P = 2/2, R = 2/3, F1 = 2 * 1 * 2/3 / (5/3) = 4/5
    # macro F1 = (2/3 + 1/2 + 4/5) / 3 = 59/90
    # micro: TP = 5, FP = 1 + 1 + 0 = 2 ("bird" is no label's FP), FN = 1 + 1 + 1 = 3
    #   -> F1 = 2*5 / (2*5 + 2 + 3) = 2/3, while accuracy = 5/8
    report = classification_report(targets, predictions)
    assert report["confusion"] == {
        "labels": ["cat", "dog", "fox"],
        "columns": ["cat", "dog", "fox", "<other>"],
        "matrix": [[2, 1, 0, 0], [1, 1, 0, 0], [0, 0, 2, 1]],
    }
    expected = {"cat": (2 / 3, 2 / 3, 2 / 3, 3), "dog": (1 / 2, 1 / 2, 1 / 2, 2), "fox": (1.0, 2 / 3, 4 / 5, 3)}
    for label, (p, r, f1, support) in expected.items():
        row = report["per_class"][label]
        assert row["precision"] == pytest.approx(p) and row["recall"] == pytest.approx(r)
        assert row["f1"] == pytest.approx(f1) and row["support"] == support
    assert report["macro_f1"] == pytest.approx(59 / 90)
    assert report["micro_f1"] == pytest.approx(2 / 3)
    assert report["accuracy"] == pytest.approx(5 / 8)
    json.dumps(report)


def test_classification_report_without_strays_has_no_other_column():
    report = classification_report(["a", "b", "b"], ["b", "b", "b"])
    assert report["confusion"]["columns"] == ["a", "b"]
    assert report["per_class"]["a"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert report["micro_f1"] == pytest.approx(report["accuracy"]) == pytest.approx(2 / 3)


def test_diversity_on_hand_counted_texts():
    scores = diversity(["a b a b a b", "c d e", "v w x y z"])
    # unigrams: 6 + 3 + 5 = 14 tokens, types {a b c d e v w x y z} = 10
    # bigrams: ab ba ab ba ab | cd de | vw wx xy yz -> 11, unique 8
    # 4-grams: text 1 has abab baba abab (3, 2 unique) -> 1/3; text 3 has 2, both unique -> 0;
    #   text 2 has none and is left out -> mean 1/6
    assert Fraction(scores["distinct_1"]).limit_denominator(100) == Fraction(10, 14)
    assert Fraction(scores["type_token_ratio"]).limit_denominator(100) == Fraction(10, 14)
    assert Fraction(scores["distinct_2"]).limit_denominator(100) == Fraction(8, 11)
    assert Fraction(scores["repetition_rate"]).limit_denominator(100) == Fraction(1, 6)
    assert diversity(["one", ""]) == {"distinct_1": 1.0, "distinct_2": 0.0, "type_token_ratio": 1.0,
                                      "repetition_rate": 0.0}
    assert diversity([]) == {"distinct_1": 0.0, "distinct_2": 0.0, "type_token_ratio": 0.0,
                             "repetition_rate": 0.0}


def test_plot_writes_png_with_and_without_fit(tmp_path):
    table = steps_breakdown([True] * 9 + [False] + [True] * 6 + [False] * 4 + [True] * 3 + [False] * 7,
                              [1] * 10 + [2] * 10 + [3] * 10)
    fit = compounding_fit(table)
    for name, f in [("fit.png", fit), ("nofit.png", None)]:
        path = tmp_path / name
        plot_accuracy_by_steps(table, f, path, title="arith")
        assert path.read_bytes().startswith(b"\x89PNG")
