"""Sweeps (`msr <command> -m ...`): every job runs and is recorded, a stopped sweep resumes,
parallel and submitit launchers, and the refusals that protect a sweep's folder."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TINY, read_metrics, run_msr
from msr import sweeps

SWEEP = [*TINY, "trainer.max_steps=6", "trainer.eval_every=3", "model=transformer", "model.d_model=16",
         "model.n_layers=1", "model.n_heads=2", "model.d_ff=32"]


def manifest(root, command: str = "train") -> list[dict]:
    [path] = list(root.glob(f"outputs/multirun/{command}/*/*/sweep.jsonl"))
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_failing_job_does_not_end_the_sweep(in_tmp, capsys):
    # job 0's sequences do not fit model.max_len=4: found only once its data is loaded
    assert run_msr("train", "-m", *SWEEP, "model.max_len=4,64,128") == 1
    err = capsys.readouterr().err
    jobs = manifest(in_tmp)
    assert [(j["job"], j["status"]) for j in jobs] == [(0, "failed"), (1, "completed"), (2, "completed")]
    assert "model.max_len=4 is shorter than some sequences" in jobs[0]["reason"]
    assert jobs[1]["objective"] == read_metrics(Path(jobs[1]["folder"]))["metrics"]["val/accuracy"]
    assert err.strip().splitlines()[-1].startswith("msr: error: 1 of 3 jobs did not complete: job 0 (model.max_len=4")
    assert "model.max_len=128" in err and "Traceback" not in err  # the summary table names what was swept
    failed = read_metrics(Path(jobs[0]["folder"]))
    assert failed["status"] == "failed" and "shorter than some sequences" in failed["reason"]


def test_fail_fast_stops_the_sweep_at_the_first_failure(in_tmp, capsys):
    assert run_msr("train", "-m", *SWEEP, "model.max_len=4,64", "sweep.fail_fast=true") == 2
    assert [(j["job"], j["status"]) for j in manifest(in_tmp)] == [(0, "failed")]
    assert len(list(in_tmp.glob("outputs/multirun/train/*/*/1"))) == 0


def test_a_job_paused_by_stop_at_lets_the_sweep_go_on(in_tmp):
    assert run_msr("train", "-m", *SWEEP, "model.max_len=64", "trainer.stop_at=2", "seed=0,1") == 1
    jobs = manifest(in_tmp)
    assert [(j["job"], j["status"]) for j in jobs] == [(0, "interrupted"), (1, "interrupted")]
    assert all("paused at step 2" in j["reason"] for j in jobs)


@pytest.mark.slow  # over 5 s; CI runs it
def test_joblib_runs_a_sweeps_jobs_in_parallel_on_a_share_of_the_cores(in_tmp, capsys):
    assert run_msr("train", "-m", *SWEEP, "model.max_len=64", "trainer.max_steps=30", "hydra/launcher=joblib",
                   "hydra.launcher.n_jobs=2", "seed=0,1") == 0
    jobs = manifest(in_tmp)
    assert sorted(j["status"] for j in jobs) == ["completed", "completed"]
    (a_end, a_wall), (b_end, b_wall) = [(j["ended"], j["wall_seconds"]) for j in jobs]
    assert a_end - a_wall < b_end and b_end - b_wall < a_end  # each started before the other ended
    cores = os.cpu_count()
    assert all(j["threads"] == max(1, cores // 2) for j in jobs)
    assert "sweep outputs/multirun/train" in capsys.readouterr().err  # the summary, from the workers' lines


@pytest.mark.parametrize("override, message", [
    ("hydra.launcher.n_jobs=0", "hydra.launcher.n_jobs=0 would run no job"),
    ("hydra/launcher=slurm", "hydra/launcher=slurm needs the hydra-submitit-launcher package: "
                             "pip install hydra-submitit-launcher"),
])
def test_a_launcher_that_cannot_run_is_refused_before_any_job(override, message, in_tmp, capsys, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec  # as if the submitit plugin were not installed
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if "submitit" in name else find_spec(name, *a))
    extra = [] if override.startswith("hydra/") else ["hydra/launcher=joblib"]
    assert run_msr("train", "-m", *SWEEP, *extra, override, "seed=0,1") == 2
    assert message in capsys.readouterr().err and not (in_tmp / "outputs").exists()


# long enough for a signal to find job 1 training, short enough for the default suite
LONG = [*TINY, "model=lstm", "model.embedding_size=16", "model.hidden_size=32", "trainer.max_steps=300",
        "trainer.eval_every=150", "trainer.log_every=50", "trainer.checkpoint_every=50"]


def files_of(folder: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def start_sweep(root: Path, *overrides: str) -> tuple[subprocess.Popen, Path]:
    """A sweep in its own process, stopped by SIGTERM once job 0 has ended and job 1 has a checkpoint."""
    sweep = subprocess.Popen([sys.executable, "-m", "msr.cli", "train", "-m", *overrides], cwd=root,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and sweep.poll() is None:
        found = list(root.glob("outputs/multirun/train/*/*"))
        if found and (found[0] / sweeps.MANIFEST).is_file() and (found[0] / "1/checkpoints/last").is_dir():
            sweep.send_signal(signal.SIGTERM)
            return sweep, found[0]
        time.sleep(0.02)
    sweep.kill()
    raise AssertionError(f"job 1 never reached a checkpoint: {sweep.communicate()[1][-2000:]}")


@pytest.mark.slow  # over 6 s; CI runs it
def test_a_sweep_stopped_by_sigterm_resumes_each_job_once_and_leaves_completed_ones_untouched(in_tmp, capsys):
    sweep, folder = start_sweep(in_tmp, *LONG, "seed=0,1,2")
    _, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 143, err[-2000:]
    assert [(j["job"], j["status"]) for j in manifest(in_tmp)] == [(0, "completed"), (1, "interrupted")]
    hint = f"msr: the sweep stopped; resume with: msr train -m {' '.join(LONG)} seed=0,1,2 resume={folder.relative_to(in_tmp)}"
    assert hint in err and not (folder / "2").exists()  # no job starts after the stop
    job0 = files_of(folder / "0")

    assert run_msr("train", "-m", *LONG, "seed=0,1,2", f"resume={folder}") == 0
    err = capsys.readouterr().err
    assert f"resuming sweep {folder}: 1 of 3 jobs completed (skipped), 1 go on from their checkpoints, 1 run" in err
    records = manifest(in_tmp)
    assert sorted((r["job"], r["status"]) for r in records) == [
        (0, "completed"), (1, "completed"), (1, "interrupted"), (2, "completed")]  # each job completed once
    assert [r["status"] for r in sweeps.read_manifest(folder)] == ["completed"] * 3
    assert files_of(folder / "0") == job0  # not a byte or a timestamp of job 0 changed
    [resume] = [json.loads(line) for line in (folder / "1/resumes.jsonl").read_text().splitlines()]
    assert resume["step"] > 0 and resume["overrides"] == []  # job 1 went on from its checkpoint...
    assert read_metrics(folder / "1")["steps"] == 300

    # ... bit for bit: the same numbers as job 1's settings run in one go
    assert run_msr("train", *LONG, "seed=1", f"hydra.run.dir={in_tmp / 'whole'}") == 0
    assert read_metrics(folder / "1")["metrics"] == read_metrics(in_tmp / "whole")["metrics"]


@pytest.mark.slow
def test_resuming_a_sweep_refuses_other_overrides_and_a_folder_that_is_not_a_sweep(in_tmp, capsys):
    assert run_msr("train", "-m", *SWEEP, "model.max_len=64", "seed=0,1") == 0
    [folder] = list(in_tmp.glob("outputs/multirun/train/*/*"))
    before = files_of(folder)
    capsys.readouterr()

    assert run_msr("train", "-m", *SWEEP, "model.max_len=64", "seed=0,1,2", f"resume={folder}") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"msr: error: resume={folder}: the sweep ran with `") and err.count("\n") == 1
    assert "added seed=0,1,2; missing seed=0,1" in err

    assert run_msr("train", *SWEEP, "model.max_len=64", f"resume={folder}") == 2  # a sweep without -m
    assert f"resume={folder} is a sweep: resume with: msr train -m " in capsys.readouterr().err

    job = folder / "0"
    assert run_msr("train", "-m", *SWEEP, "model.max_len=64", f"resume={job}") == 2  # a run is not a sweep
    assert f"{job} is not a sweep folder (no readable sweep.json); to resume one run, drop -m" in capsys.readouterr().err
    assert files_of(folder) == before and len(list(in_tmp.glob("outputs/multirun/train/*/*"))) == 1

    # a finished sweep has nothing left to run: resume=auto starts a new one
    assert run_msr("train", "-m", *SWEEP, "model.max_len=64", "seed=0,1", "resume=auto") == 0
    assert "no unfinished train sweep with these overrides; starting a new one" in capsys.readouterr().err
    assert len(list(in_tmp.glob("outputs/multirun/train/*/*"))) == 2 and files_of(folder) == before


@pytest.mark.slow
def test_resume_auto_finds_the_unfinished_sweep_and_reruns_its_failed_job(in_tmp, capsys):
    grid = [*SWEEP, "model.max_len=4,64"]  # job 0 fails: its sequences do not fit
    assert run_msr("train", "-m", *grid) == 1
    [folder] = list(in_tmp.glob("outputs/multirun/train/*/*"))
    assert not sweeps.is_finished(folder)
    job1 = files_of(folder / "1")
    capsys.readouterr()
    assert run_msr("train", "-m", *grid, "resume=auto") == 1  # it fails again, in its own folder
    err = capsys.readouterr().err
    assert f"msr: resuming {folder.relative_to(in_tmp)}" in err and "1 of 2 jobs completed (skipped), 0 go on" in err
    assert [(r["job"], r["status"]) for r in manifest(in_tmp)] == [(0, "failed"), (1, "completed"), (0, "failed")]
    assert files_of(folder / "1") == job1 and len(list(in_tmp.glob("outputs/multirun/train/*/*"))) == 1


@pytest.mark.slow
def test_evaluate_run_sweep_scores_each_completed_job_and_resumes_as_a_sweep(in_tmp, capsys):
    assert run_msr("train", "-m", *SWEEP, "model.max_len=64", "seed=0,1") == 0
    [trained] = list(in_tmp.glob("outputs/multirun/train/*/*"))
    assert run_msr("evaluate", f"run={trained}", "data.test.size=10") == 0  # run=SWEEP: one job per trained job
    [folder] = list(in_tmp.glob("outputs/multirun/evaluate/*/*"))
    assert [read_metrics(folder / n)["source_runs"] for n in "01"] == [[str(trained / "0")], [str(trained / "1")]]
    assert read_metrics(folder / "0")["examples"] == 10
    done = files_of(folder / "0")
    (folder / "1/metrics.json").write_text(json.dumps({"status": "interrupted"}))  # as if stopped there
    capsys.readouterr()
    assert run_msr("evaluate", f"run={trained}", "data.test.size=10", f"resume={folder}") == 0
    assert "1 of 2 jobs completed (skipped), 0 go on from their checkpoints, 1 run from the start" in capsys.readouterr().err
    assert files_of(folder / "0") == done and read_metrics(folder / "1")["status"] == "completed"

    assert run_msr("report", str(folder), "--no-plots") == 0  # evaluations group as the runs they scored
    [row] = list(csv.DictReader((folder / "report.csv").open()))
    assert row["n"] == "2" and float(row["test/accuracy_mean"]) == pytest.approx(
        sum(read_metrics(folder / n)["metrics"]["test/accuracy"] for n in "01") / 2)


@pytest.mark.slow  # over 6 s; CI runs it
def test_submitit_local_gives_the_same_folders_and_manifest_as_the_basic_launcher(in_tmp):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    assert run_msr("train", "-m", "hydra/launcher=submitit_local", *SWEEP, "model.max_len=4,64") == 1
    [folder] = list(in_tmp.glob("outputs/multirun/train/*/*"))
    jobs = sweeps.read_manifest(folder)
    assert [(j["job"], j["status"], j["folder"]) for j in jobs] == [
        (0, "failed", str(folder / "0")), (1, "completed", str(folder / "1"))]
    assert "shorter than some sequences" in jobs[0]["reason"]
    assert read_metrics(folder / "1")["metrics"]["val/accuracy"] == jobs[1]["objective"]
    assert (folder / "0/.hydra/overrides.yaml").is_file() and (folder / sweeps.DEFINITION).is_file()


@pytest.mark.slow
def test_a_preempted_submitit_job_checkpoints_is_requeued_and_goes_on_in_its_own_folder(in_tmp):
    """What SLURM does before a time limit or a preemption (SIGUSR2 to the job), on submitit's local executor."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep = subprocess.Popen([sys.executable, "-m", "msr.cli", "train", "-m", "hydra/launcher=submitit_local",
                              "+hydra.launcher.max_num_timeout=1", *LONG, "trainer.max_steps=1500",
                              "trainer.checkpoint_every=500", "seed=0"],
                             cwd=in_tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(in_tmp.glob("outputs/multirun/train/*/*/0/checkpoints/last")):
        time.sleep(0.05)
    [folder] = list(in_tmp.glob("outputs/multirun/train/*/*"))
    job = subprocess.run(["pgrep", "-f", f"submitit.core._submit {folder.resolve()}"], capture_output=True, text=True)
    os.kill(int(job.stdout.split()[0]), signal.SIGUSR2)
    _, err = sweep.communicate(timeout=180)
    assert sweep.returncode == 0, err[-2000:]
    records = [json.loads(line) for line in (folder / sweeps.MANIFEST).read_text().splitlines()]
    assert [r["status"] for r in records] == ["interrupted", "completed"] and len(sweeps.read_manifest(folder)) == 1
    assert "preempted by the scheduler; requeued" in records[0]["reason"]
    [resume] = [json.loads(line) for line in (folder / "0/resumes.jsonl").read_text().splitlines()]
    assert 500 <= resume["step"] < 1500 and read_metrics(folder / "0")["steps"] == 1500


def test_batches_keep_every_job_number_when_jobs_are_skipped():
    jobs = [[f"seed={n}"] for n in range(7)]
    assert list(sweeps.batches([1, 2, 4, 5, 6], jobs, max_batch_size=2)) == [
        (1, [["seed=1"], ["seed=2"]]), (4, [["seed=4"], ["seed=5"]]), (6, [["seed=6"]])]
    assert list(sweeps.batches([0, 1, 2], jobs, None)) == [(0, jobs[:3])]


def test_parallel_jobs_are_pinned_to_the_gpus_by_job_number(monkeypatch):
    import torch
    from omegaconf import OmegaConf

    pinned = []
    job = OmegaConf.create({"job": {"num": 5}, "launcher": {"_target_": "hydra_plugins.hydra_joblib_launcher."
                                                            "joblib_launcher.JoblibLauncher", "n_jobs": 2}})
    monkeypatch.setattr(sweeps, "current_job", lambda: job)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "set_device", pinned.append)
    threads = torch.get_num_threads()
    try:
        sweeps.place_job()
        assert pinned == [1] and torch.get_num_threads() == max(1, (os.cpu_count() or 1) // 2)
    finally:
        torch.set_num_threads(threads)


def test_evaluate_of_a_sweep_with_no_completed_job_is_refused_in_one_line(in_tmp, capsys):
    folder = in_tmp / "sweep"
    folder.mkdir()
    (folder / sweeps.MANIFEST).write_text(json.dumps({"job": 0, "status": "failed", "folder": str(folder / "0")}) + "\n")
    assert run_msr("evaluate", f"run={folder}") == 2
    assert capsys.readouterr().err == (f"msr: error: run={folder}: no job of this sweep completed; "
                                       "there is nothing to evaluate\n")


def test_hydra_mode_multirun_in_the_config_runs_a_sweep_without_dash_m(in_tmp):
    """msr answers Hydra's get_mode from its own composition (one composition fewer per run):
    a hydra.mode that the config or an override sets must still decide the mode."""
    assert run_msr("train", *SWEEP, "trainer.max_steps=3", "hydra.mode=MULTIRUN", "hydra.sweep.dir=sweep",
                   "hydra.run.dir=single") == 0
    assert read_metrics(in_tmp / "sweep/0")["status"] == "completed"
    assert not (in_tmp / "single").exists()
