"""Overrides that come from run folders: what `msr evaluate run=RUN` and `msr finetune init=RUN`
inherit from the run, and what `resume=RUN|SWEEP|auto` puts back. Torch-free, like the CLI."""

from __future__ import annotations

import sys
from pathlib import Path

from msr.errors import UserError
from msr.runs import (OUTPUTS, find_checkpoint, has_saved_config, newest_unfinished, run_folder, saved_choices,
                      saved_overrides)


def inherit_data(args: list[str]) -> list[str]:
    """`msr evaluate run=RUN` scores on the run's own data: its data option and data.* overrides
    go first, so that the user's own overrides come after them and win. With data=NAME given,
    the run's data overrides no longer apply; paths.* always does."""
    run = next((a.partition("=")[2] for a in args if a.startswith("run=")), "")
    folder = run_folder(run.strip("[]").split(",")[0].strip())
    if not run or not has_saved_config(folder):
        return args  # nothing to inherit; a missing run is reported by validation
    overrides, choices = saved_overrides(folder), saved_choices(folder)
    own_data = any(a.startswith("data=") for a in args)
    inherited = [o for o in overrides if o.startswith("paths.") or (not own_data and o.startswith("data."))]
    return before_overrides(args, ([] if own_data else [f"data={choices['data']}"]) + inherited)


def sweep_jobs(args: list[str]) -> list[str]:
    """`msr evaluate run=SWEEP_FOLDER` scores every completed job of the sweep: a sweep of its own
    over their folders. Their data settings, which evaluate inherits, must then be one."""
    from msr import sweeps

    run = next((a.partition("=")[2] for a in args if a.startswith("run=")), "")
    if not run or not (Path(run) / sweeps.MANIFEST).is_file():
        return args
    jobs = [r["folder"] for r in sweeps.read_manifest(Path(run)) if r["status"] == "completed"]
    if not jobs:
        raise UserError(f"run={run}: no job of this sweep completed; there is nothing to evaluate")
    data = {(saved_choices(job).get("data"), *(o for o in saved_overrides(job) if o.startswith("data.")))
            for job in jobs}
    if len(data) > 1:
        raise UserError(f"run={run}: its jobs were trained on different data settings, which evaluate would "
                        f"inherit from one of them; evaluate them one by one (run=JOB_FOLDER)")
    others = [a for a in args if not a.startswith("run=") and a not in ("-m", "--multirun")]
    return ["-m", f"run={','.join(jobs)}", *others]


def inherit_model(args: list[str]) -> list[str]:
    """`msr finetune init=RUN` trains RUN's model with RUN's tokenizer: the model's settings, as
    its checkpoint records them, go first (a later model.dropout=... still wins)."""
    import json

    init = next((a.partition("=")[2] for a in args if a.startswith("init=")), "")
    source = find_checkpoint(init) if init else None  # RUN's best or last, or RUN when it is a checkpoint
    meta = source / "meta.json" if source else None
    if meta is None or not meta.is_file():
        return args  # a missing init is reported by validation; one without checkpoints by the command
    try:
        saved = json.loads(meta.read_text())
        model, tokenizer = saved["model"], saved["config"]["data"]["tokenizer"]
    except (ValueError, KeyError, TypeError):
        raise UserError(f"init={init}: {meta} is not an msr checkpoint's meta.json") from None
    chosen = next((a.partition("=")[2] for a in args if a.startswith("model=")), model["name"])
    if chosen != model["name"]:
        raise UserError(f"init={init} is a {model['name']} run; model={chosen} cannot take its weights")
    inherited = [f"model={model['name']}"] + [f"model.{k}={str(v).lower() if isinstance(v, bool) else v}"
                                              for k, v in model.items() if k != "name"]
    return before_overrides(args, [*inherited, f"data.tokenizer={tokenizer}"])


def before_overrides(args: list[str], inherited: list[str]) -> list[str]:
    """`inherited` ahead of the user's own overrides, so that theirs win, but after the flags
    (`-m`, `--cfg job`) that come first: Hydra's parser takes its overrides in one stretch."""
    first = next((i for i, a in enumerate(args) if "=" in a and not a.startswith("-")), len(args))
    return [*args[:first], *inherited, *args[first:]]


def resume_overrides(command: str, args: list[str]) -> list[str]:
    """`resume=RUN` reruns RUN's own overrides into RUN itself (later overrides win, e.g. a
    larger trainer.max_steps); `resume=auto` finds the newest unfinished run with the same
    overrides under outputs/<command>/ (or a sweep's job under outputs/multirun/<command>/), or
    starts a new run when there is none."""
    from msr import sweeps

    folder, others = resume_target(args, command, "run", lambda given: newest_unfinished(command, given))
    if folder is None:
        return others
    if (folder / sweeps.DEFINITION).is_file():
        raise UserError(f"resume={folder} is a sweep: {sweeps.resume_hint(command, folder)}")
    # Hydra would rewrite .hydra/ in place (not atomically): a kill at that moment would cost the
    # run its saved config, so a resumed run keeps the one it started with.
    return [*saved_overrides(folder), *others, f"resume={folder}", f"hydra.run.dir={folder}",
            "hydra.output_subdir=null"]


def resume_sweep(command: str, args: list[str]) -> list[str]:
    """`-m ... resume=SWEEP_FOLDER` runs the sweep's unfinished jobs in their own folders (msr's
    sweeper skips the completed ones); `resume=auto` takes the newest unfinished sweep of the
    command with the same overrides, or starts a new sweep when there is none."""
    from msr import sweeps

    def newest(given: list[str]) -> Path | None:
        return sweeps.newest_unfinished_sweep(command, sweeps.definition_overrides(given), OUTPUTS)

    folder, others = resume_target(args, command, "sweep", newest)
    if folder is None:
        return others
    sweeps.check_definition(folder, sweeps.definition_overrides(others))
    return [*others, f"hydra.sweep.dir={folder}", "hydra.sweeper.resume=true"]


def resume_target(args: list[str], command: str, kind: str, newest) -> tuple[Path | None, list[str]]:
    """The folder `resume=` names (for auto, `newest(overrides)`; None: nothing to resume, so a
    new run or sweep starts), and the other arguments."""
    value = next(a.partition("=")[2] for a in args if a.startswith("resume="))
    others = [a for a in args if not a.startswith("resume=")]
    if value == "auto":
        found = newest(others)
        if found is None:
            sys.stderr.write(f"msr: no unfinished {command} {kind} with these overrides; starting a new one\n")
            return None, others
        sys.stderr.write(f"msr: resuming {found}\n")
        return found, others
    if not Path(value).is_dir():
        raise UserError(f"resume={value}: no such {kind} folder")
    return Path(value), others
