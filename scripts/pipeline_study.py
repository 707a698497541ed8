"""Does each step of the pipeline raise accuracy? Two studies, each a short chain of msr runs.

transfer: pretrain a Transformer as a language model on 20,000 kinship stories (inputs only, no
          answers), then train on 500 labelled examples from scratch and fine-tuned from it
          (all weights at two learning rates, and LoRA adapters of rank 8).
augment-kinship, augment-arith: 500 labelled examples, trained as they are and with rewrites
          from `msr augment` (kinship: four renamings of each example; arith: sixteen copies
          with perturbed numbers and recomputed answers), and with 2,000 fresh inputs that the
          plain run labels itself (kept at probability >= 0.9); then an adversarial test set, made by
          searching label-preserving edits of the test inputs that the plain run gets right
          until it gets them wrong, scores both (and a plain run with another seed, which the
          search never saw).

Every job is `python -m msr.cli <command> ...` with its run folder in --out/<job>; a job whose
folder already holds a completed run is skipped, so a re-run only does what is missing. Then the
table of test accuracy by reasoning steps is printed as GitHub markdown and written to
--out/table.md. Extra overrides after `--` go to every training job (e.g. `-- device=cuda`).

Run:  python scripts/pipeline_study.py transfer [--out outputs/study/transfer] [-- device=cuda]
      python scripts/pipeline_study.py augment-kinship
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

# Both studies train on 1-4 steps and test on 1-6, with 500 labelled examples.
KINSHIP = ["data=kinship", "data.train.size=500", "data.test.max_steps=6", "data.test.size=900"]
TRANSFORMER = ["optimizer.lr=1e-3", "optimizer.weight_decay=0.1", "trainer.max_steps=2000",
               "trainer.batch_size=32", "trainer.eval_every=100"]
ARITH = ["data=arith", "data.train.size=500", "data.test.max_steps=6", "data.test.size=900"]
LSTM = ["trainer.max_steps=2000", "trainer.batch_size=32", "trainer.eval_every=100"]

# job name -> (command, overrides, does it train); {out} is the study's folder
STUDIES: dict[str, dict[str, tuple[str, list[str], bool]]] = {
    "transfer": {
        "pretrained_lm": ("pretrain", ["data=kinship", "model=transformer", "data.tokenizer=word",
                                       "data.block_size=128", *TRANSFORMER], True),
        "scratch": ("train", [*KINSHIP, "model=transformer", *TRANSFORMER], True),
        "scratch_lr3e-4": ("train", [*KINSHIP, "model=transformer", *TRANSFORMER, "optimizer.lr=3e-4"], True),
        "finetuned": ("finetune", ["init={out}/pretrained_lm", *KINSHIP, *TRANSFORMER], True),
        "finetuned_lr3e-4": ("finetune", ["init={out}/pretrained_lm", *KINSHIP, *TRANSFORMER, "optimizer.lr=3e-4"],
                             True),
        "finetuned_lora_r8": ("finetune", ["init={out}/pretrained_lm", *KINSHIP, *TRANSFORMER,
                                              "finetune.lora.rank=8", "optimizer.lr=3e-3"], True),
    },
}


def augment_study(data: list[str], ops: list[str], copies: int, trainer: list[str]) -> dict:
    adversarial = "data.path={out}/adversarial_test/data"
    return {
        "plain": ("train", [*data, *trainer], True),
        "plain_seed1": ("train", [*data, *trainer, "seed=1"], True),
        "augmented_data": ("augment", [*data, f"augment.copies={copies}", f"augment.ops=[{','.join(ops)}]"], False),
        "augmented": ("train", ["data=files", "data.path={out}/augmented_data/data", *trainer], True),
        "pseudo_labelled_data": ("augment", [*data, "augment.copies=0", "augment.teacher={out}/plain",
                                             "augment.pseudo_labels=2000", "augment.confidence=0.9"], False),
        "self_trained": ("train", ["data=files", "data.path={out}/pseudo_labelled_data/data", *trainer], True),
        "adversarial_test": ("augment", [*data, "augment.split=test", "augment.keep_original=false",
                                         "augment.copies=0", "augment.teacher={out}/plain",
                                         "augment.adversarial=30"], False),
        "plain_on_adversarial": ("evaluate", ["run={out}/plain", "data=files", adversarial], False),
        "plain_seed1_on_adversarial": ("evaluate", ["run={out}/plain_seed1", "data=files", adversarial], False),
        "augmented_on_adversarial": ("evaluate", ["run={out}/augmented", adversarial], False),
    }


STUDIES["augment-kinship"] = augment_study(KINSHIP, ["rename_entities"], copies=4, trainer=LSTM)
STUDIES["augment-arith"] = augment_study(ARITH, ["perturb_numbers"], copies=16, trainer=[])  # msr train's budget


def completed(folder: Path) -> bool:
    try:
        return json.loads((folder / "metrics.json").read_text()).get("status") == "completed"
    except (OSError, ValueError):
        return False


def run_jobs(study: str, out: Path, extra: list[str]) -> bool:
    ok = True
    for name, (command, overrides, trains) in STUDIES[study].items():
        folder = out / name
        if completed(folder):
            print(f"[skip] {name}: completed in {folder}")
            continue
        shutil.rmtree(folder, ignore_errors=True)
        args = [o.format(out=out) for o in overrides] + (extra if trains else [])
        cmd = [sys.executable, "-m", "msr.cli", command, *args, f"hydra.run.dir={folder}"]
        print(f"[run ] {name}: msr {command} {' '.join(args)}", flush=True)
        start = time.perf_counter()
        with open(out / f"{name}.log", "w") as log:
            code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode
        print(f"[{'done' if code == 0 else 'FAIL'}] {name}: {time.perf_counter() - start:.0f} s", flush=True)
        ok &= code == 0
    return ok


def table(study: str, out: Path) -> str:
    records = {name: json.loads((out / name / "metrics.json").read_text())
               for name in STUDIES[study] if completed(out / name)}
    scored = {name: r for name, r in records.items() if r.get("accuracy_by_steps")}
    steps = sorted({int(s) for r in scored.values() for s in r["accuracy_by_steps"]})
    lines = ["| run | " + " | ".join(f"{s} steps" for s in steps) + " | all | wall s |",
             "|---|" + "---|" * (len(steps) + 2)]
    for name, r in scored.items():
        by_steps = r["accuracy_by_steps"]
        overall = next(v for k, v in r["metrics"].items() if k.endswith("/accuracy") and k.startswith("test"))
        cells = [f"{by_steps[str(s)]:.2f}" if str(s) in by_steps else "–" for s in steps]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {overall:.3f} | {r['wall_seconds']:.0f} |")
    notes = []
    for name, r in records.items():
        augment = r.get("augment")
        if augment:
            kept = {op: c.get("kept", 0) for op, c in augment["operations"].items()}
            notes.append(f"- {name}: {augment['source_examples']} examples in, {augment['examples']} out; kept per "
                         f"operation {kept}" + "".join(f"; {key} {augment[key]}" for key in ("pseudo_labels", "adversarial")
                                                        if key in augment))
    return "\n".join(lines + [""] + notes) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("study", choices=sorted(STUDIES))
    p.add_argument("--out", type=Path, help="the study's folder (default outputs/study/<study>)")
    p.add_argument("--table-only", action="store_true", help="only render the table from --out")
    p.add_argument("extra", nargs="*", help="overrides for every training job, after --")
    args = p.parse_args()
    out = (args.out or Path("outputs/study") / args.study).absolute()
    out.mkdir(parents=True, exist_ok=True)
    ok = args.table_only or run_jobs(args.study, out, args.extra)
    text = table(args.study, out)
    (out / "table.md").write_text(text)
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
