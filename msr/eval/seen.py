"""What the evaluated runs have seen: the inputs of their training data, rebuilt from the
configs they saved, so that a test set drawn at evaluate time can leave every one of them out.

Each run folder keeps its config (.hydra/config.yaml) and the fingerprint of the data it
trained on (metrics.json): the data is rebuilt from the one and checked against the other, so
data that can no longer be rebuilt as it was (files edited, a generator changed) is refused
rather than trusted. A fine-tuned run has seen its init run's data too, and an ensemble every
member's; a run trained on `msr augment`'s output has seen the augmented rows, which its files
hold.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from msr.errors import UserError
from msr.runs import has_saved_config, read_record, run_folder, saved_config

log = logging.getLogger("msr")

# inputs a held-out split must not share: the model trained on train and was selected on val
SEEN_BY = {"test": ("train", "val"), "val": ("train",), "train": ()}


@dataclass
class Seen:
    inputs: set[str] = field(default_factory=set)
    runs: list[str] = field(default_factory=list)  # the run folders whose data `inputs` holds
    chance: float | None = None  # share of the first run's most frequent training target
    unchecked: list[str] = field(default_factory=list)  # checkpoint folders kept apart from their run


def seen_inputs(runs: list[str], split: str, paths) -> Seen:
    """The raw inputs of the splits of `runs` (and of their init runs) that `split` must not share."""
    seen = Seen()
    if not SEEN_BY[split]:  # the training split itself: nothing to leave out
        return seen
    for run in runs:
        if not has_saved_config(run_folder(run), "config.yaml"):
            log.warning("run=%s is a checkpoint without its run folder: what it trained on is unknown, so the %s "
                        "set cannot be checked against it", run, split)
            seen.unchecked.append(str(run))
            continue
        for folder, saved in lineage(run_folder(run)):
            if str(folder) in seen.runs:
                continue
            data = rebuild(folder, saved, paths)
            seen.runs.append(str(folder))
            if data is None:  # a corpus: text, not inputs a test could repeat
                continue
            for name in SEEN_BY[split]:
                seen.inputs.update(r["input"] for r in data.raw.get(name, []))
            if seen.chance is None and not data.corpus:
                seen.chance = chance_level(data.splits["train"])
    return seen


def chance_level(rows: list[dict]) -> float:
    """What always answering the training split's most frequent target would score."""
    counts = Counter(" ".join(r["target"].split()) for r in rows)
    return counts.most_common(1)[0][1] / len(rows) if rows else 0.0


def lineage(folder: Path) -> list[tuple]:
    """The run and the runs it started from (msr finetune init=...), nearest first, each with
    the config it saved."""
    chain = [(folder, saved_config(folder))]
    while True:
        last, saved = chain[-1]
        init = saved.get("init")
        if not init:
            return chain
        parent = run_folder(init)
        if not parent.is_dir():
            raise UserError(f"run={last} was fine-tuned from init={init}, which is gone: its training "
                            f"data cannot be rebuilt to keep it out of the test set")
        if parent in [f for f, _ in chain]:
            return chain
        chain.append((parent, saved_config(parent)))


def rebuild(folder: Path, saved, paths):
    """The run's data (DataSplits) as it trained on it, from the config it `saved`, checked
    against its fingerprint; None for a text corpus. `paths` are today's (the data may have
    moved since: MSR_DATA)."""
    from omegaconf import OmegaConf

    from msr.config import SCHEMAS, DataCommandConfig, FilesConfig, to_object
    from msr.data import content_fingerprint, corpus_texts, load_data

    schema = SCHEMAS.get(f"data/{saved.data.name}", FilesConfig)
    root = OmegaConf.structured(DataCommandConfig)
    root.paths = OmegaConf.structured(paths)
    root.data = OmegaConf.merge(OmegaConf.structured(schema), saved.data)
    try:
        cfg = to_object(root).data
        if getattr(cfg, "is_corpus", False):
            return None
        data = load_data(cfg, root.paths)
    except UserError as err:
        raise UserError(f"run={folder}: its training data must be rebuilt to keep it out of the test set, "
                        f"but: {err}") from None
    record = read_record(folder)
    expected, command = record.get("data_fingerprint"), record.get("command")
    if command == "pretrain":
        found = content_fingerprint({name: [{"text": text}] for name, text in corpus_texts(data).items()})
    else:
        found = content_fingerprint(data.splits)
    if expected is None:
        log.warning("run %s recorded no data fingerprint (it did not finish): its training data is rebuilt "
                    "from its config unchecked", folder)
    elif found != expected:
        raise UserError(f"run={folder}: its training data, rebuilt from its config, is not what it trained on "
                        f"(fingerprint {found}, the run's {expected}): the files or the generator changed since, "
                        f"so a test set cannot be kept apart from it")
    return data

