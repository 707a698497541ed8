"""A sweep (`msr <command> -m ...`) runs every job, whatever one of them does, and says how each
ended: the manifest `sweep.jsonl` in the sweep folder gets one line per job as it ends, and the
sweep ends with a table of them and a non-zero exit code when any job failed.

Hydra's launcher runs the jobs and keeps going past a job that raises an Exception, but not past
SystemExit, which is how a single run reports a user error: inside a sweep, a failed job raises
`JobFailed` instead (unless sweep.fail_fast). Each line is appended with one write under an
exclusive lock, so jobs that end at the same moment, in other processes too, never tear a line.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from pathlib import Path

MANIFEST = "sweep.jsonl"
# the package that brings each launcher msr knows of, for the error when it is missing
LAUNCHER_PACKAGES = {"joblib": "hydra-joblib-launcher", "submitit_local": "hydra-submitit-launcher",
                     "submitit_slurm": "hydra-submitit-launcher"}


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
    line = {"job": hydra.job.num, "overrides": list(hydra.overrides.task), "folder": str(folder),
            "status": record.get("status"), "reason": record.get("reason"),
            "objective": (record.get("metrics") or {}).get(objective) if objective else None,
            "wall_seconds": record.get("wall_seconds"), "ended": round(time.time(), 3),
            "threads": sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None}
    append_line(Path(hydra.sweep.dir) / MANIFEST, json.dumps(line) + "\n")


def share_cores() -> None:
    """Parallel jobs on one machine (hydra/launcher=joblib with n_jobs=N) split its cores: each
    job's torch uses cores // N threads, so N jobs do not fight over them (n_jobs=-1: one each)."""
    hydra = current_job()
    launcher = hydra.launcher if hydra is not None else {}
    if "joblib" not in str(launcher.get("_target_", "")).lower():
        return
    import torch

    cores = os.cpu_count() or 1
    jobs = launcher.get("n_jobs") or 1
    torch.set_num_threads(max(1, cores // (cores if jobs < 0 else jobs)))


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
    shared = set.intersection(*(set(r["overrides"]) for r in jobs)) if len(jobs) > 1 else set()
    table = Table("job", "swept", "status", "objective", "seconds", "reason", title=f"sweep {sweep_dir}")
    for r in jobs:
        objective = "" if r["objective"] is None else f"{r['objective']:.4f}"
        seconds = "" if r["wall_seconds"] is None else f"{r['wall_seconds']:.1f}"
        swept = " ".join(o for o in r["overrides"] if o not in shared)  # what tells the jobs apart
        table.add_row(str(r["job"]), swept, r["status"] or "", objective, seconds, r["reason"] or "")
    Console(stderr=True).print(table)
    return [r for r in jobs if r["status"] != "completed"]
