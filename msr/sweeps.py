"""A sweep (`msr <command> -m ...`) runs every job, whatever one of them does, and says how each
ended: the manifest `sweep.jsonl` in the sweep folder gets one line per job as it ends, and the
sweep ends with a table of them and a non-zero exit code when any job failed.

Hydra's launcher runs the jobs and keeps going past a job that raises an Exception, but not past
SystemExit, which is how a single run reports a user error: inside a sweep, a failed job raises
`JobFailed` instead (unless sweep.fail_fast). Each line is appended with one write under an
exclusive lock, so jobs that end at the same moment, in other processes too, never tear a line.

`sweep.json` holds the sweep's definition (its overrides) and every job's overrides, written by
msr's sweeper (hydra_plugins/msr_sweeper) before the first job: what `resume=SWEEP_FOLDER`
checks a resumed sweep against, and what tells an unfinished sweep from a finished one.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import shutil
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from msr.errors import Pruned, Terminated, UserError
from msr.runs import HISTORY_HOOKS, read_record, write_json

MANIFEST = "sweep.jsonl"
DEFINITION = "sweep.json"
STUDY_JOURNAL = "study.journal"  # an Optuna study's storage, in its sweep folder
STUDY_NAME = "msr"
FINAL = ("completed", "pruned", "failed")  # a study's trial ended so is not run again
MINIMIZED = ("loss", "perplexity", "error", "seconds")  # objectives named so are better lower
# The Optuna sweeper's trials by job number, for the jobs its launcher runs in its own process;
# a job in another process (joblib, submitit) opens the study from the sweep folder instead.
ACTIVE_TRIALS: dict = {}
# the package that brings each launcher msr knows of, for the error when it is missing
LAUNCHER_PACKAGES = {"joblib": "hydra-joblib-launcher", "submitit_local": "hydra-submitit-launcher",
                     "submitit_slurm": "hydra-submitit-launcher", "slurm": "hydra-submitit-launcher",
                     "local": "hydra-submitit-launcher"}  # slurm and local: msr's presets (conf/hydra/launcher)


class JobFailed(Exception):
    """A sweep's job failed; its record is written, and the launcher goes on to the next job."""


def current_job():
    """Hydra's settings of the job running now, or None outside a sweep."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra = HydraConfig.get() if HydraConfig.initialized() else None
    return hydra if hydra is not None and hydra.mode == RunMode.MULTIRUN else None


def record_job(record: dict, folder: Path, objective: str | None) -> None:
    """Append the job's outcome to the manifest of the sweep it belongs to (no-op outside a sweep)."""
    hydra = current_job()
    if hydra is None:
        return
    overrides = [o for o in hydra.overrides.task if not o.startswith("resume=")]  # a resumed job is the same job
    line = {"job": hydra.job.num, "overrides": overrides, "folder": str(folder),
            "status": record.get("status"), "reason": record.get("reason"),
            "objective": (record.get("metrics") or {}).get(objective) if objective else None,
            "wall_seconds": record.get("wall_seconds"), "ended": round(time.time(), 3),
            "threads": sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None}
    append_line(Path(hydra.sweep.dir) / MANIFEST, json.dumps(line) + "\n")


def place_job() -> None:
    """Parallel jobs on one machine split it: with hydra/launcher=joblib and n_jobs=N each job's
    torch uses cores // N threads (n_jobs=-1: one each), so that N jobs do not fight over the
    cores, and on a machine with several GPUs job k runs on GPU k mod their number. Hydra leaves
    both to the launcher. set_device, unlike CUDA_VISIBLE_DEVICES, still works in a worker that
    joblib reuses after it has initialised CUDA for an earlier job."""
    hydra = current_job()
    launcher = hydra.launcher if hydra is not None else {}
    target = str(launcher.get("_target_", "")).lower()
    if "joblib" in target:
        import torch

        cores = os.cpu_count() or 1
        jobs = launcher.get("n_jobs") or 1
        torch.set_num_threads(max(1, cores // (cores if jobs < 0 else jobs)))
        if torch.cuda.is_available() and torch.cuda.device_count() > 1:
            torch.cuda.set_device(hydra.job.num % torch.cuda.device_count())
    elif "submitit" in target and launcher.get("cpus_per_task"):
        import torch

        torch.set_num_threads(int(launcher.cpus_per_task))  # what the scheduler gave the job


def continues_in(folder: Path, cfg) -> bool:
    """A sweep's job whose folder holds its own unfinished run with a checkpoint to go on from: an
    interrupted job of a resumed sweep, or a job the scheduler requeued after a preemption."""
    return (current_job() is not None and "resume" in cfg and not cfg.resume
            and read_record(folder).get("status") in ("interrupted", "running")
            and (Path(folder) / "checkpoints" / "last").is_dir())


def starts_again(folder: Path) -> bool:
    """A sweep's job requeued (or resumed) before it wrote a checkpoint: it runs from the start in
    its own folder, which holds only its unfinished first attempt."""
    return current_job() is not None and read_record(folder).get("status") in ("interrupted", "running")


def write_definition(sweep_dir: Path, overrides: list[str], jobs: list[list[str]], study: dict | None = None) -> None:
    """`study` ({"n_trials": N}) marks an Optuna study, whose jobs are not known before they run."""
    write_json(Path(sweep_dir) / DEFINITION, {"overrides": overrides, "jobs": jobs, **({"study": study} if study else {})})


def read_definition(sweep_dir: Path) -> dict:
    path = Path(sweep_dir) / DEFINITION
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        raise UserError(f"{sweep_dir} is not a sweep folder (no readable {DEFINITION}); to resume one run, "
                        f"drop -m") from None


def definition_overrides(args: list[str]) -> list[str]:
    """The overrides that define a sweep: not flags, and not Hydra's own settings (resuming with
    another launcher, or fewer parallel jobs, is the same sweep)."""
    return [a for a in args if not a.startswith("-") and not a.lstrip("+~").startswith(("hydra.", "hydra/"))]


def check_definition(sweep_dir: Path, overrides: list[str]) -> None:
    saved = read_definition(sweep_dir)["overrides"]
    if saved != overrides:
        added = [o for o in overrides if o not in saved]
        missing = [o for o in saved if o not in overrides]
        differs = "; ".join(part for part in (f"added {' '.join(added)}" if added else "",
                                              f"missing {' '.join(missing)}" if missing else "") if part)
        raise UserError(f"resume={sweep_dir}: the sweep ran with `{shlex.join(saved)}`, not these overrides "
                        f"({differs or 'another order'}); give the same ones, or start a new sweep")


def is_finished(sweep_dir: Path) -> bool:
    """Every job completed; for a study, n_trials trials ended (a failed or pruned trial is not rerun)."""
    definition = read_definition(sweep_dir)
    if "study" in definition:
        return sum(r["status"] in FINAL for r in read_manifest(sweep_dir)) >= definition["study"]["n_trials"]
    done = {r["job"] for r in read_manifest(sweep_dir) if r["status"] == "completed"}
    return done >= set(range(len(definition["jobs"])))


def newest_unfinished_sweep(command: str, overrides: list[str], outputs: Path) -> Path | None:
    """What `-m ... resume=auto` resumes: the newest sweep of `command` with these overrides that
    has a job not completed."""
    for folder in sorted(outputs.glob(f"multirun/{command}/*/*"), reverse=True):
        try:
            if read_definition(folder)["overrides"] == overrides and not is_finished(folder):
                return folder
        except (UserError, KeyError, TypeError):
            continue
    return None


def resume_plan(sweep_dir: Path, jobs: list[list[str]], folder_of) -> list[int]:
    """The jobs a resumed sweep runs, in order: every one not completed. An interrupted job keeps
    its folder and goes on from its checkpoint (`continues_in`); any other starts again in an
    emptied folder, the failed attempt's outcome staying in the manifest."""
    if read_definition(sweep_dir)["jobs"] != jobs:
        raise UserError(f"{sweep_dir}: its jobs' overrides differ from those these settings make "
                        f"({DEFINITION}); start a new sweep")
    todo, skipped, going_on = [], 0, 0
    for num, overrides in enumerate(jobs):
        folder = Path(folder_of(overrides, num))
        if read_record(folder).get("status") == "completed":
            skipped += 1
            continue
        going_on += prepare_rerun(folder, sweep_dir)
        todo.append(num)
    sys.stderr.write(f"msr: resuming sweep {sweep_dir}: {skipped} of {len(jobs)} jobs completed (skipped), {going_on} "
                     f"go on from their checkpoints, {len(todo) - going_on} run from the start\n")
    return todo


def prepare_rerun(folder: Path, sweep_dir: Path) -> bool:
    """Ready a resumed sweep's unfinished job: True when it goes on from its checkpoint; else its
    folder is emptied (when it is the sweep's own) and it runs from the start."""
    status = read_record(folder).get("status")
    if status in ("interrupted", "running") and (folder / "checkpoints" / "last").is_dir():
        return True
    if folder.exists() and folder.resolve().is_relative_to(Path(sweep_dir).resolve()):
        shutil.rmtree(folder)
    return False


def batches(todo: list[int], jobs: list[list[str]], max_batch_size: int | None):
    """(first job number, the overrides of a run of consecutive jobs): a launcher numbers a batch's
    jobs from its first, so skipped jobs split the batches and every job keeps its number."""
    run: list[int] = []
    for num in todo:
        if run and (num != run[-1] + 1 or (max_batch_size and len(run) == max_batch_size)):
            yield run[0], [jobs[n] for n in run]
            run = []
        run.append(num)
    if run:
        yield run[0], [jobs[n] for n in run]


@contextmanager
def stop_on_sigterm():
    """SIGTERM stops the sweep as Ctrl-C does, also between jobs (a running job checkpoints first)."""
    def stop(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def resume_hint(command: str, sweep_dir: Path) -> str:
    try:
        overrides = read_definition(sweep_dir)["overrides"]
    except UserError:
        return ""
    return f"resume with: {shlex.join(['msr', command, '-m', *overrides, f'resume={sweep_dir}'])}"


def append_line(path: Path, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)  # closing releases the lock


def read_manifest(sweep_dir: Path) -> list[dict]:
    """The newest record of each job (a resumed job has more than one)."""
    path = Path(sweep_dir) / MANIFEST
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    return sorted({r["job"]: r for r in lines}.values(), key=lambda r: r["job"])


def summarize(sweep_dir: Path) -> list[dict]:
    """Print a table of the sweep's jobs (stderr); the failed ones."""
    from rich.console import Console
    from rich.table import Table

    jobs = read_manifest(sweep_dir)
    ended = {r["job"] for r in jobs}
    if (Path(sweep_dir) / DEFINITION).is_file():  # the jobs a stopped sweep did not reach yet
        planned = read_definition(sweep_dir)["jobs"]
        jobs += [{"job": n, "overrides": o, "status": "not run", "objective": None, "wall_seconds": None,
                  "reason": None} for n, o in enumerate(planned) if n not in ended]
        jobs.sort(key=lambda r: r["job"])
    shared = set.intersection(*(set(r["overrides"]) for r in jobs)) if jobs else set()
    table = Table("job", "swept", "status", "objective", "seconds", "reason", title=f"sweep {sweep_dir}")
    for r in jobs:
        objective = "" if r["objective"] is None else f"{r['objective']:.4f}"
        seconds = "" if r["wall_seconds"] is None else f"{r['wall_seconds']:.1f}"
        swept = " ".join(o for o in r["overrides"] if o not in shared)  # what tells the jobs apart
        table.add_row(str(r["job"]), swept, r["status"] or "", objective, seconds, r["reason"] or "")
    Console(stderr=True).print(table)
    return [r for r in jobs if r["status"] not in ("completed", "pruned", "not run")]


def reported_metrics(sweep_dir: Path) -> set[str]:
    """The metrics the sweep's completed jobs report (for the error naming an objective none has)."""
    return {name for r in read_manifest(sweep_dir) if r.get("folder")
            for name in (read_record(Path(r["folder"])).get("metrics") or {})}


def objective_direction(objective: str, direction: str | None) -> str:
    """sweep.direction when set; else losses (and the like) minimize, anything else maximizes."""
    return direction or ("minimize" if any(word in objective.lower() for word in MINIMIZED) else "maximize")


def study_storage(sweep_dir: Path):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(Path(sweep_dir) / STUDY_JOURNAL)))


def make_pruner(spec):
    """hydra.sweeper.pruner: median | hyperband | none, or a {_target_: ...} of Optuna's pruners."""
    import optuna

    if isinstance(spec, optuna.pruners.BasePruner):  # Hydra instantiated the sweeper's {_target_: ...} already
        return spec
    if spec is not None and not isinstance(spec, str):
        from hydra.utils import instantiate

        return instantiate(spec)
    pruners = {"median": optuna.pruners.MedianPruner, "hyperband": optuna.pruners.HyperbandPruner,
               "none": optuna.pruners.NopPruner}
    if (spec or "none") not in pruners:
        raise UserError(f"hydra.sweeper.pruner={spec} is not known: give one of {', '.join(pruners)}")
    return pruners[spec or "none"]()


def job_trial():
    """The Optuna trial the running job is, or None outside an Optuna sweep."""
    hydra = current_job()
    if hydra is None or not str(hydra.sweeper.get("_target_", "")).endswith("OptunaSweeper"):
        return None
    if hydra.job.num in ACTIVE_TRIALS:
        return ACTIVE_TRIALS[hydra.job.num]
    import optuna  # a worker process: its trial is in the study's journal, by number

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=STUDY_NAME, storage=study_storage(Path(hydra.sweep.dir)),
                              pruner=make_pruner(hydra.sweeper.get("pruner")))
    frozen = next((t for t in study.get_trials(deepcopy=False) if t.number == hydra.job.num), None)
    return optuna.trial.Trial(study, frozen._trial_id) if frozen is not None else None


@contextmanager
def reporting_to(trial, objective: str | None):
    """While the job trains, each logged record with the objective goes to its trial; the pruner's
    stop raises Pruned there."""
    def report(record: dict) -> None:
        value = record.get(objective)
        if not isinstance(value, (int, float)) or "step" not in record:
            return
        trial.report(float(value), int(record["step"]))
        if trial.should_prune():
            raise Pruned(f"pruned by the study's pruner at step {record['step']} ({objective}={value:.4g})")

    if trial is None or not objective:
        yield
        return
    HISTORY_HOOKS.append(report)
    try:
        yield
    finally:
        HISTORY_HOOKS.remove(report)
