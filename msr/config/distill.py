"""distill: knowledge distillation (Hinton et al., 2015) from a trained run into the model trained now.

The teacher is checked here, before any work, from its files alone (no torch): it must be a
supervised run with a checkpoint, trained on exactly the data this run composes, so that its
tokenizer (which the student reuses) and its soft targets belong to the same examples, and the
student's test split is one the teacher never trained on.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from msr.config.base import Validated, positive, require
from msr.errors import ConfigError, UserError


@dataclass
class DistillConfig(Validated):
    teacher: str = ""  # a run folder of msr train (or its checkpoints/<name>); "" trains without a teacher
    temperature: float = 2.0  # T: both models' logits are divided by it before the KL term
    alpha: float = 0.5  # the weight of the soft (teacher) term; 1 - alpha weighs the hard labels' cross-entropy

    def check(self, p: str) -> None:
        positive(p + "temperature", self.temperature)
        require(0 <= self.alpha <= 1, p + "alpha", self.alpha, "must be in [0, 1] (the soft targets' weight)")

    def check_teacher(self, data, command: str) -> None:
        """The teacher run against this run's command and data (a dataclass of conf/data/)."""
        from msr.runs import find_checkpoint, is_run

        if not self.teacher:
            return
        key = "distill.teacher"
        require(command == "train", key, self.teacher, f"is for msr train only: msr {command} trains without a teacher")
        require(is_run(self.teacher), key, self.teacher, "must be an existing run folder of msr train")
        checkpoint = find_checkpoint(self.teacher, ("best",))
        require(checkpoint is not None, key, self.teacher,
                "has no checkpoints/best/model.safetensors: give a run of msr train that reached its first evaluation")
        meta = teacher_meta(checkpoint)
        require(meta.get("objective") == "supervised", key, self.teacher,
                f"is a {meta.get('objective')} run; the teacher must be trained on input -> target (msr train)")
        ours = json.loads(json.dumps(asdict(data)))  # enums as their values, as the teacher's meta.json has them
        theirs = meta.get("config", {}).get("data", {})
        differing = next(differences(ours, theirs), None)
        if differing is not None:
            name, mine, its = differing
            option = "data" if name == "name" else "data." + name  # another task: data=<task>
            raise ConfigError(option, mine, f"the teacher ({self.teacher}) was trained with {option}={its!r}; a "
                              f"student learns from the teacher's data and vocabulary: give the teacher's data options")


def teacher_meta(checkpoint: Path) -> dict:
    try:
        return json.loads((checkpoint / "meta.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"distill.teacher: {checkpoint / 'meta.json'} cannot be read ({err})") from None


def differences(ours: dict, theirs: dict, prefix: str = ""):
    """(dotted key, our value, the teacher's value) for each leaf that differs, nested dicts walked."""
    for key in sorted(set(ours) | set(theirs), key=lambda k: (k != "name", k)):  # another task first
        mine, its = ours.get(key), theirs.get(key)
        if isinstance(mine, dict) and isinstance(its, dict):
            yield from differences(mine, its, f"{prefix}{key}.")
        elif mine != its:
            yield prefix + key, mine, its
