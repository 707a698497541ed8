"""augment: which operations msr augment draws, how many copies, and the teacher's part."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import List

from msr.config.base import Validated, check_runs, non_negative, positive_ints, require


@dataclass
class AugmentOptions(Validated):
    split: str = "train"  # the split to augment; the others are copied as they are
    ops: List[str] = field(default_factory=list)  # NAME or NAME:WEIGHT each; [] = every rewriting op that applies
    copies: int = 1  # new examples drawn per source example from the rewriting ops
    keep_original: bool = True  # the output split holds the source examples too
    teacher: str = ""  # a trained run, for pseudo_labels and adversarial
    pseudo_labels: int = 0  # unlabeled inputs to label with the teacher (drawn from a built-in task)
    confidence: float = 0.9  # keep a pseudo-label whose probability under the teacher is at least this
    adversarial: int = 0  # > 0: candidate edits tried per example; those that flip the teacher are kept
    edits: int = 2  # label-preserving operations chained in one adversarial candidate

    def check(self, p: str) -> None:
        require(self.split in ("train", "val", "test"), p + "split", self.split, "one of train, val, test")
        for op in self.ops:
            weight = op.partition(":")[2]
            require(re.fullmatch(r"\d+(\.\d*)?|\.\d+", weight or "1") is not None and float(weight or 1) > 0,
                    p + "ops", op, "each NAME or NAME:WEIGHT with a weight > 0, e.g. [swap_operands,perturb_numbers:2]")
        non_negative(p + "copies", self.copies)
        non_negative(p + "pseudo_labels", self.pseudo_labels)
        non_negative(p + "adversarial", self.adversarial)
        positive_ints(self, p, "edits")
        require(0 <= self.confidence <= 1, p + "confidence", self.confidence, "must be in [0, 1]")
        wants_teacher = self.pseudo_labels or self.adversarial
        require(self.keep_original or self.copies or wants_teacher, p + "copies", self.copies,
                f"with {p}keep_original=false and no teacher ({p}pseudo_labels, {p}adversarial) the {self.split} "
                f"split would hold no examples: ask for {p}copies >= 1 or keep the originals")
        require(bool(self.teacher) or not wants_teacher, p + "teacher", self.teacher or None,
                "pseudo-labels and adversarial search need a trained run: augment.teacher=RUN")
        if self.teacher:
            check_runs(p + "teacher", self.teacher)

    def weights(self) -> dict[str, float]:
        """{operation: weight} from ops' NAME[:WEIGHT] items."""
        return {op.partition(":")[0]: float(op.partition(":")[2] or 1) for op in self.ops}
