"""One module per command, each with `run(cfg, run_dir) -> summary`.

`run_command` owns the run's status: whatever the command does, metrics.json ends as
completed, failed (with the reason), interrupted, or pruned (an Optuna trial stopped by its pruner).
"""

from __future__ import annotations

import errno
import importlib
import json
import logging
import shlex
import signal
import sys

from msr.errors import Pruned, Stopped, Terminated, TrainingFailed, UserError
from msr.launch import note_failure, peer_failure, quiet_worker
from msr.sweeps import (JobFailed, continues_in, current_job, job_trial, place_job, record_job, reporting_to,
                        starts_again)
from msr.train.stopping import requeue

log = logging.getLogger("msr")
# The terminal gets the reason as one `msr: error:` line on stderr; msr.log gets it too, but the
# console handler skips records marked so, or the terminal would show it twice.
LOG_FILE_ONLY = {"file_only": True}


def _terminate(signum, frame) -> None:
    raise Terminated()


def run_command(command: str, cfg) -> dict:
    from hydra.core.hydra_config import HydraConfig

    from msr.runs import RunDir, atomic_write

    hydra = HydraConfig.get()
    command_line = shlex.join(["msr", command, *hydra.overrides.task])  # this job's own overrides
    module = importlib.import_module(f"msr.commands.{command}")
    run = RunDir(hydra.runtime.output_dir, command, command_line, getattr(module, "EMPTY_SUMMARY", None))
    if continues_in(run.path, cfg):  # a sweep's job goes on in its own folder (resumed sweep, requeue)
        cfg.resume = str(run.path)
    resuming = bool(cfg.get("resume"))
    # a resume refused for bad input leaves the run's record as it was
    record_before = (run.path / "metrics.json").read_text() if resuming and (run.path / "metrics.json").exists() else None
    if record_before is not None:  # stopped again before training goes on, it has still reached as far
        reached = json.loads(record_before)
        run.progress.update({k: reached[k] for k in ("steps", "parameters") if reached.get(k) is not None})
    again = not resuming and starts_again(run.path)
    if again:  # stopped before its first checkpoint: its history so far is not this run's
        run.truncate_history(0)
    run.begin(resume=resuming or again)
    if not run.writes:
        quiet_worker()
    previous = signal.signal(signal.SIGTERM, _terminate)  # a scheduler's or `kill`'s stop ends like Ctrl-C
    try:
        place_job()
        with reporting_to(job_trial(), objective(cfg)):
            summary = module.run(cfg, run)
    except (UserError, TrainingFailed) as err:
        if record_before is not None and isinstance(err, UserError):
            if run.writes:
                atomic_write(run.path / "metrics.json", lambda f: f.write(record_before))
            record = {"status": "failed", "reason": str(err)}
        else:
            record = run.end("failed", reason=str(err))
        worker_failed(run, str(err))
        log.error("msr: error: %s", err, extra=LOG_FILE_ONLY)
        if run.writes:  # the other workers of a data-parallel run meet the same error: said once
            sys.stderr.write(f"msr: error: {err}\n")
        job_failed(cfg, record, run.path, 2 if isinstance(err, UserError) else 1)
    except Pruned as pruned:
        record = run.end("pruned", reason=str(pruned))
        record_job(record, run.path, objective(cfg))
        log.info("msr: %s; the run folder is %s", pruned, run.path)
        return record
    except KeyboardInterrupt as stop:
        if run.writes and (peer := peer_failure(run.path)):  # the launcher stopped the others with SIGTERM
            run.end("failed", reason=peer)
            log.error("msr: error: %s", peer, extra=LOG_FILE_ONLY)
            sys.stderr.write(f"msr: error: {peer}; see {run.path / 'msr.log'}\n")
            sys.exit(1)
        stop = stop if isinstance(stop, Stopped) else Stopped()
        record = run.end("interrupted", reason=stop.reason)
        record_job(record, run.path, objective(cfg))
        resumable = (run.checkpoints / "last").is_dir() and current_job() is None  # a sweep resumes as one
        hint = f"; resume with: msr {command} resume={run.path}" if resumable else ""
        if run.writes:
            log.warning("msr: %s; the run folder is %s%s", stop.reason, run.path, hint, extra=LOG_FILE_ONLY)
            sys.stderr.write(f"msr: {stop.reason}; the run folder is {run.path}{hint}\n")
        requeue(stop)  # preempted under a scheduler: it requeues the job, which goes on from here
        if stop.exit_code == 0 and current_job() is not None:
            return record  # paused on purpose (trainer.stop_at): the sweep's other jobs still run
        sys.exit(stop.exit_code)
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS, errno.EPERM):
            raise
        message = f"cannot write {err.filename or run.path}: {err.strerror}; free some space or choose another " \
                  f"output folder (hydra.run.dir=...)"
        try:
            run.end("failed", reason=message)
        except OSError:
            pass  # the disk that is full cannot take the failure record either; the old file stays whole
        sys.stderr.write(f"msr: error: {message}\n")
        sys.exit(1)
    except Exception as err:  # a bug, not a user mistake: keep the traceback
        reason = (peer_failure(run.path) if run.writes else None) or f"{type(err).__name__}: {err}"
        record = run.end("failed", reason=reason)
        worker_failed(run, reason)
        log.error("msr %s crashed", command, exc_info=err, extra=LOG_FILE_ONLY)  # the traceback follows on stderr
        record_job(record, run.path, objective(cfg))
        raise RuntimeError(f"msr {command} crashed; the run folder is {run.path}") from err
    finally:
        signal.signal(signal.SIGTERM, previous)
    record = run.end("completed", **summary)
    record_job(record, run.path, objective(cfg))
    log.info("run folder: %s", run.path)
    return record


def worker_failed(run, reason: str) -> None:
    """A worker other than rank 0 leaves its failure where rank 0 will look for it."""
    if not run.writes:
        note_failure(run.path, reason)


def objective(cfg) -> str | None:
    return cfg.sweep.objective if cfg.get("sweep") is not None else None


def job_failed(cfg, record: dict, folder, exit_code: int) -> None:
    """A single run ends here with its exit code; a sweep's job is recorded and the sweep goes on
    (or, with sweep.fail_fast, stops)."""
    record_job(record, folder, objective(cfg))
    fail_fast = cfg.get("sweep") is not None and cfg.sweep.fail_fast
    if current_job() is not None and not fail_fast:
        raise JobFailed(record.get("reason"))
    sys.exit(exit_code)
