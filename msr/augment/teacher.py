"""A trained run as a teacher: it labels fresh inputs (pseudo-labels) and is the model that the
adversarial search tries to fool; `teach` is msr augment's step that uses it.

The teacher sees each input as it was trained to (its own data.template; with a scratchpad it
writes its working and the answer follows ####), decodes greedily, and gives each answer the
probability of the whole sequence it wrote: that is the confidence pseudo-labels are kept by.
"""

from __future__ import annotations

import json
import logging
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from msr.augment import TASK_RECORD
from msr.augment.operations import OPERATIONS, Context, label_preserving
from msr.augment.output import Output
from msr.config import DecodeConfig
from msr.data import ANSWER_MARK, answer_of
from msr.data.generated import PRESENTATION_KEYS
from msr.data.tasks import TASKS
from msr.device import resolve_device
from msr.errors import UserError
from msr.eval.decoding import decode
from msr.eval.inference import load_checkpoint
from msr.eval.prompts import not_text, task_prompts
from msr.runs import checkpoint_dir, has_saved_config, saved_config, saved_hydra

log = logging.getLogger("msr")


@dataclass
class Answer:
    text: str  # the final answer (after ####, when the teacher writes a scratchpad)
    working: str | None  # what it wrote before ####, if anything
    confidence: float  # the probability of the whole generated sequence


# Keys of a task's config that leave the rule from input to label as it is: how examples are
# presented, the data's own seed, and each split's size and step range (harder inputs, same rule).
NOT_LABELLING = (*PRESENTATION_KEYS, "seed", "train", "val", "test")


def plain(data) -> dict:
    """A data config as JSON values (enums as their values), as meta.json and task.json hold it."""
    return json.loads(json.dumps(data, default=lambda v: getattr(v, "value", str(v))))


def recorded_task(folder: Path) -> dict | None:
    """The built-in task that msr augment rewrote into `folder` (its data/), or None if unknown."""
    record = folder / TASK_RECORD
    if record.is_file():
        return json.loads(record.read_text())["data"]
    # folders written before task.json existed: the augment run's own config sits above data/
    if has_saved_config(folder.parent, "config.yaml"):
        from omegaconf import OmegaConf

        saved = OmegaConf.to_container(saved_config(folder.parent))
        data = saved.get("data") or {}
        if "augment" in saved and data.get("name") in TASKS:
            return data
    return None


def training_folder(data: dict, directory: Path) -> Path | None:
    """Where the teacher's data=files read from: data.path as given, which was relative to the
    directory the teacher was trained in (hydra.runtime.cwd) when it is not found from here.
    None for data.hub, which no msr augment wrote."""
    if not data.get("path") or data.get("hub"):
        return None
    path = Path(data["path"]).expanduser()
    if not path.is_absolute() and not path.exists():
        run = next((f for f in [directory, *directory.parents][:4] if has_saved_config(f)), None)
        cwd = saved_hydra(run).get("runtime", {}).get("cwd") if run is not None else None
        if cwd:
            path = Path(cwd) / path
    return path if path.is_dir() else path.parent


def check_task(run: str, directory: Path, trained_on: dict, wanted: dict) -> None:
    """Refuse a teacher whose answers follow another rule than the data's: another task, or the
    same task with settings that change its labels (data.modulus, ...). A teacher trained on
    data=files is judged by the task those files were written from, where msr augment recorded it."""
    task, origin = trained_on, ""
    if trained_on.get("name") not in TASKS and wanted["name"] in TASKS and trained_on.get("name") == "files":
        folder = training_folder(trained_on, directory)
        task = recorded_task(folder) if folder is not None else None
        if task is None:
            raise UserError(f"augment.teacher={run} was trained on data=files at {folder or trained_on.get('hub')}, "
                            f"which records no task "
                            f"({TASK_RECORD}, written by msr augment), so nothing says its labels follow "
                            f"data={wanted['name']}'s rule: use a run trained on data={wanted['name']} or on "
                            f"a folder written by msr augment data={wanted['name']}")
        origin = f" (its data=files at {folder} were written from data={task.get('name')})"
    if task.get("name") != wanted["name"]:
        raise UserError(f"augment.teacher={run} was trained on data={task.get('name')}, not data={wanted['name']}; "
                        f"its answers would be for another task{origin}: use a run trained on data={wanted['name']}")
    if wanted["name"] not in TASKS:  # free text has no settings that make a rule: its files are its labels
        return
    before, now = plain(task), plain(wanted)
    for key in sorted(set(before) | set(now)):
        if key not in NOT_LABELLING and before.get(key) != now.get(key):
            raise UserError(f"augment.teacher={run} was trained with data.{key}={before.get(key)}, not "
                            f"data.{key}={now.get(key)}; its answers would follow another rule{origin}: use a "
                            f"teacher trained with data.{key}={now.get(key)}")


class Teacher:
    """A model that answers task inputs written with `template`: a trained run's (from_run), or
    the model in training itself (adversarial training searches against it)."""

    def __init__(self, model, tokenizer, template: str, device):
        self.model, self.tokenizer, self.template, self.device = model, tokenizer, template, device

    @classmethod
    def from_run(cls, run: str, data: dict, device) -> Teacher:
        """The run's best checkpoint; `data`: the data config (as a dict) it is to label examples of."""
        directory = checkpoint_dir(run, "best")
        model, tokenizer, meta = load_checkpoint(directory, device)
        if meta.get("objective") != "supervised":
            raise UserError(f"augment.teacher={run} is a language model (msr pretrain); a teacher answers "
                            f"inputs, so it must be a run of msr train or msr finetune")
        trained_on = meta["config"]["data"]
        check_task(run, directory.resolve(), trained_on, data)
        return cls(model, tokenizer, trained_on.get("template", "{input}"), device)

    def prompts(self, inputs: list[str]) -> list[list[int]]:
        return task_prompts(self.tokenizer, inputs, self.template)

    def fits(self, text: str) -> bool:
        """Whether the teacher can read `text` and still write an answer (a Transformer's max_len)."""
        return len(self.prompts([text])[0]) < getattr(self.model, "max_len", float("inf"))

    def answer(self, inputs: list[str]) -> list[Answer]:
        prompts = self.prompts(inputs)
        longest = max((len(p) for p in prompts), default=0)
        if longest >= getattr(self.model, "max_len", float("inf")):
            raise UserError(f"augment.teacher takes sequences of at most model.max_len={self.model.max_len} tokens; "
                            f"some inputs here have {longest - 1}: use a teacher trained on inputs this long")
        unknown = sum(ids.count(self.tokenizer.unk_id) for ids in prompts)
        if unknown:
            log.warning("the teacher's vocabulary lacks %d symbols of these inputs (read as <unk>)", unknown)
        decoded = decode(self.model, prompts, self.tokenizer.eos_id, DecodeConfig(), self.device,
                         banned=not_text(self.tokenizer))
        answers = []
        for [best] in decoded:
            text = self.tokenizer.decode(best.ids)
            working = text.rpartition(ANSWER_MARK)[0].strip() if ANSWER_MARK in text else None
            answers.append(Answer(answer_of(text), working, math.exp(best.logprob)))
        return answers


def right(answer: Answer, target: str) -> bool:
    return answer.text.split() == answer_of(target).split()


def adversarial_search(teacher: Teacher, rows: list[dict], ops: list[str], ctx: Context, tries: int, edits: int,
                       seed: int) -> tuple[dict[int, list[tuple[dict, str, str]]], dict]:
    """For each example the teacher gets right, up to `tries` candidates, each a chain of 1 to
    `edits` label-preserving operations. Returns, per source index, the candidates whose answer
    the teacher gets wrong, in the order tried, as (record, operations, teacher's answer); and counts."""
    first = teacher.answer([r["input"] for r in rows])
    attacked = [i for i, (r, a) in enumerate(zip(rows, first)) if right(a, r["target"])]
    candidates = []  # (source index, record, "op+op")
    for i in attacked:
        rng = random.Random(f"adversarial-{seed}-{i}")
        for _ in range(tries):
            record, applied = rows[i], []
            for _ in range(rng.randint(1, edits)):
                name = rng.choice(ops)
                edited = OPERATIONS[name].apply(record, rng, ctx)
                if edited is not None:
                    record, applied = edited, applied + [name]
            if applied:
                candidates.append((i, record, "+".join(applied)))
    candidates = [c for c in candidates if teacher.fits(c[1]["input"])]  # an added distractor may not fit
    found: dict[int, list[tuple[dict, str, str]]] = {}
    for (i, record, applied), answer in zip(candidates, teacher.answer([c[1]["input"] for c in candidates])):
        if not right(answer, record["target"]):
            found.setdefault(i, []).append((record, applied, answer.text))
    counts = {"examples": len(rows), "teacher_right": len(attacked), "candidates": len(candidates),
              "flipped": len(found)}
    log.info("adversarial search: the teacher answers %d of %d right; %d candidate edits flip %d of those (%.1f%%)",
             len(attacked), len(rows), len(candidates), len(found), 100 * len(found) / max(len(attacked), 1))
    return found, counts


def teach(cfg, source: list[dict], ctx: Context, out: Output) -> dict:
    """msr augment's teacher step: pseudo-labels and adversarial edits, each if asked for, added
    to `out`; what each found."""
    options = cfg.augment
    teacher = Teacher.from_run(options.teacher, asdict(cfg.data), resolve_device(cfg.device.type))
    report = {}
    if options.pseudo_labels:
        report["pseudo_labels"] = pseudo_label(teacher, cfg, out)
    if options.adversarial:
        found, report["adversarial"] = adversarial_search(teacher, source, label_preserving(ctx.task), ctx,
                                                         options.adversarial, options.edits, cfg.seed)
        for i, flips in found.items():
            for record, applied, answer in flips:  # the first that is new to the data set
                if out.add("adversarial", record, i, teacher_answer=answer, edits=applied):
                    break
    return report


def pseudo_label(teacher: Teacher, cfg, out: Output) -> dict:
    """Fresh inputs from the task's generator, labelled by the teacher; the confident ones kept.
    The generator's own answers are kept aside only to say how often the teacher was right."""
    split = getattr(cfg.data, cfg.augment.split)
    fresh = []
    for i in range(cfg.augment.pseudo_labels):
        rng = random.Random(f"unlabeled-{cfg.seed}-{i}")
        fresh.append(TASKS[cfg.data.name].sample(rng, rng.randint(split.min_steps, split.max_steps), cfg.data))
    answers = teacher.answer([r["input"] for r in fresh])
    confident = kept = correct = 0  # not `right`, the function above
    for record, answer in zip(fresh, answers):
        if answer.confidence < cfg.augment.confidence:
            out.count("pseudo_label", "below confidence")
            continue
        confident += 1
        labelled = {"input": record["input"], "target": answer.text, "steps": record["steps"]}
        if answer.working is not None:  # the teacher's own working, if it writes one
            labelled["scratchpad"] = answer.working
        if out.add("pseudo_label", labelled, None, confidence=round(answer.confidence, 4)):
            kept += 1
            correct += answer.text == record["target"]
    log.info("pseudo-labels: %d of %d fresh inputs labelled with confidence >= %g, %d of them new; %d of those "
             "answers are right (checked with the task's solver)", confident, len(fresh), cfg.augment.confidence,
             kept, correct)
    return {"inputs": len(fresh), "confident": confident, "kept": kept, "right": correct}
