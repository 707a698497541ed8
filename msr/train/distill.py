"""Knowledge distillation (Hinton et al., 2015): the student learns the teacher's soft targets.

At each target token (labels elsewhere are IGNORE) both models' logits are divided by the
temperature T; the loss is

    alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(student, label)

alpha weighs the soft term, 1 - alpha the hard labels. T^2 keeps the soft term's gradients the
size of the hard term's whatever T is (they shrink as 1/T^2 otherwise), so alpha means the same
at every temperature. The teacher is frozen, in eval mode, and never sees a gradient; it reads
the same tokens as the student, so it must share its vocabulary: the student reuses the teacher's
tokenizer (msr/config/distill.py checks beforehand that the data is the teacher's own).
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from msr.data.batching import IGNORE, EncodedSplit
from msr.eval.inference import load_checkpoint
from msr.eval.speed import timed_scores
from msr.models import count_parameters
from msr.runs import find_checkpoint

log = logging.getLogger("msr")


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, temperature: float,
                      alpha: float, reduction: str = "mean") -> torch.Tensor:
    """The mixed loss over target tokens: logits [B, T, V], labels [B, T]; `reduction` as
    cross_entropy's: the mean over target tokens, or their sum (micro-batches add up to the mean)."""
    targets = labels != IGNORE
    student, teacher, labels = student[targets].float(), teacher[targets].float(), labels[targets]
    soft = F.kl_div(F.log_softmax(student / temperature, -1), F.log_softmax(teacher / temperature, -1),
                    reduction="none", log_target=True).sum(-1) * temperature ** 2
    hard = F.cross_entropy(student, labels, reduction="none")
    per_token = alpha * soft + (1 - alpha) * hard
    return per_token.sum() if reduction == "sum" else per_token.mean()


class Teacher:
    """A trained run's best checkpoint, frozen: its tokenizer, and the Trainer's criterion that
    mixes its soft targets into the loss."""

    def __init__(self, cfg, device: torch.device):
        self.cfg, self.checkpoint = cfg, find_checkpoint(cfg.teacher, ("best",))
        with torch.random.fork_rng(devices=[]):  # building it draws no numbers the student's run would see
            self.model, self.tokenizer, self.meta = load_checkpoint(self.checkpoint, device)
        self.model.requires_grad_(False)
        log.info("distill: teacher %s (%s, %s parameters, step %s), temperature %g, alpha %g (soft) / %g (hard)",
                 self.checkpoint, self.meta["model"]["name"], f"{count_parameters(self.model):,}",
                 self.meta.get("step"), cfg.temperature, cfg.alpha, 1 - cfg.alpha)

    def criterion(self, logits: torch.Tensor, labels: torch.Tensor, inputs: torch.Tensor,
                  reduction: str = "mean") -> torch.Tensor:
        """Trainer.criterion: the student's logits against the teacher's on the same inputs."""
        with torch.no_grad():
            teacher, _ = self.model(inputs)
        return distillation_loss(logits, teacher, labels, self.cfg.temperature, self.cfg.alpha, reduction)

    def side_by_side(self, student: nn.Module, test: EncodedSplit, batch_size: int, autocast) -> dict:
        """metrics.json's `distill`: both models scored and timed on the same test split, here and
        now, so their speeds are comparable (tokens_per_second: test tokens read per second)."""
        result = {"teacher_run": str(self.checkpoint.resolve()), "temperature": self.cfg.temperature,
                  "alpha": self.cfg.alpha}
        for name, model, (scores, speed) in zip(("teacher", "student"), (self.model, student),
                                                timed_scores([self.model, student], test, batch_size, 1, autocast)):
            result[name] = {"test/accuracy": scores["accuracy"], "test/loss": scores["loss"],
                            "parameters": count_parameters(model), "tokens_per_second": speed}
        result["parameter_ratio"] = round(result["student"]["parameters"] / result["teacher"]["parameters"], 4)
        log.info("distill: test accuracy teacher %.4f (%s parameters), student %.4f (%s parameters, %.1fx faster)",
                 result["teacher"]["test/accuracy"], f"{result['teacher']['parameters']:,}",
                 result["student"]["test/accuracy"], f"{result['student']['parameters']:,}",
                 result["student"]["tokens_per_second"] / result["teacher"]["tokens_per_second"])
        return result
