"""Finding runs: RUN in each of its forms, the checkpoint a resume goes on from after a crash,
the newest unfinished run of a command (a sweep's job too), and what a run saved of its config.

The run folders here are laid out by hand, as msr and Hydra leave them, so no model trains."""

from __future__ import annotations

import json
import logging
import logging.config
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from msr import runs
from msr.run_overrides import inherit_data, inherit_model, resume_overrides
from msr.errors import UserError


def checkpoint(folder: Path, step: int = 10) -> Path:
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / "meta.json").write_text(json.dumps({"format": 1, "step": step, "model": {"name": "gru", "dropout": 0.0},
                                                  "config": {"data": {"tokenizer": "char"}}}))
    return folder


def run_folder(folder: Path, overrides=("model=gru",), status="completed", checkpoints=("best", "last"),
               choices=None) -> Path:
    """A run folder as `msr train` leaves it: .hydra/, metrics.json and checkpoints/."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra/overrides.yaml").write_text(yaml.safe_dump([*overrides, "hydra.run.dir=x", "resume=y"]))
    (folder / ".hydra/config.yaml").write_text(yaml.safe_dump({"seed": 0, "data": {"name": "arith"}}))
    hydra = {"hydra": {"runtime": {"choices": choices or {"data": "arith", "model": "gru"}}}}
    (folder / ".hydra/hydra.yaml").write_text(yaml.safe_dump(hydra))
    (folder / "metrics.json").write_text(json.dumps({"command": "train", "status": status}))
    for name in checkpoints:
        checkpoint(folder / "checkpoints" / name)
    return folder


def test_run_is_a_run_folder_a_checkpoint_folder_or_a_sweep_job(tmp_path):
    run = run_folder(tmp_path / "outputs/train/2026-01-01/00-00-00")
    job = run_folder(tmp_path / "outputs/multirun/train/2026-01-01/00-00-00/3")
    for folder in (run, job):
        assert runs.run_folder(folder) == folder
        assert runs.run_folder(folder / "checkpoints/best") == folder
        assert runs.checkpoint_dir(folder, "best") == folder / "checkpoints/best"
        assert runs.checkpoint_dir(folder, "last") == folder / "checkpoints/last"
        # a checkpoint folder is its own checkpoint, whichever name is asked for
        assert runs.checkpoint_dir(folder / "checkpoints/last", "best") == folder / "checkpoints/last"
        assert runs.find_checkpoint(folder) == folder / "checkpoints/best"
    only_last = run_folder(tmp_path / "only-last", checkpoints=("last",))
    assert runs.find_checkpoint(only_last) == only_last / "checkpoints/last"
    with pytest.raises(UserError, match="has no checkpoints/best/model.safetensors"):
        runs.checkpoint_dir(only_last, "best")
    assert runs.find_checkpoint(tmp_path / "nowhere") is None
    assert runs.is_run(run) and not runs.is_run(tmp_path / "nowhere")
    assert runs.listed_runs("a") == ["a"] and runs.listed_runs(["a", "b"]) == ["a", "b"]


def test_the_checkpoint_to_resume_from_after_a_crash(tmp_path):
    run = run_folder(tmp_path / "run", checkpoints=())
    assert runs.latest_checkpoint(run) is None
    for step in (4, 8):
        checkpoint(run / f"checkpoints/step-{step:07d}", step)
    assert runs.latest_checkpoint(run) == run / "checkpoints/step-0000008"  # the newest kept one
    checkpoint(run / "checkpoints/.last.old", 12)  # killed between the two renames of a save
    assert runs.latest_checkpoint(run) == run / "checkpoints/.last.old"
    checkpoint(run / "checkpoints/last", 16)
    assert runs.latest_checkpoint(run) == run / "checkpoints/last"
    (run / "checkpoints/last/meta.json").unlink()  # an incomplete folder never stands in
    assert runs.latest_checkpoint(run) == run / "checkpoints/.last.old"


def test_newest_unfinished_run_counts_sweep_jobs(in_tmp):
    outputs = Path("outputs")
    run_folder(outputs / "train/2026-01-01/00-00-00", status="interrupted")
    assert runs.newest_unfinished("train", ["model=gru"]) == outputs / "train/2026-01-01/00-00-00"
    for job in ("9", "10"):  # job 10 is newer than job 9, though "10" < "9" as text
        run_folder(outputs / f"multirun/train/2026-01-02/00-00-00/{job}", status="interrupted")
    run_folder(outputs / "multirun/train/2026-01-02/00-00-00/11", status="interrupted", overrides=["model=lstm"])
    run_folder(outputs / "multirun/train/2026-01-03/00-00-00/0", status="completed")
    run_folder(outputs / "multirun/train/2026-01-03/00-00-01/0", status="failed", checkpoints=())
    run_folder(outputs / "pretrain/2026-01-04/00-00-00", status="interrupted")
    (outputs / "multirun/train/2026-01-02/00-00-00/multirun.yaml").write_text("{}")  # Hydra's, not a job
    assert runs.newest_unfinished("train", ["model=gru"]) == outputs / "multirun/train/2026-01-02/00-00-00/10"
    assert runs.newest_unfinished("train", ["model=rnn"]) is None
    assert [str(p) for p in runs.command_runs("train")][:3] == [
        "outputs/train/2026-01-01/00-00-00", "outputs/multirun/train/2026-01-02/00-00-00/9",
        "outputs/multirun/train/2026-01-02/00-00-00/10"]

    # the CLI resumes that job into its own folder
    args = resume_overrides("train", ["model=gru", "resume=auto"])
    job = "outputs/multirun/train/2026-01-02/00-00-00/10"
    assert args == ["model=gru", "model=gru", f"resume={job}", f"hydra.run.dir={job}", "hydra.output_subdir=null"]


def test_what_a_run_saved_of_its_config(tmp_path):
    run = run_folder(tmp_path / "run", overrides=["data=listops", "data.train.size=9", "paths.data=/d", "seed=3"],
                     choices={"data": "listops", "model": "lstm"})
    assert runs.saved_overrides(run) == ["data=listops", "data.train.size=9", "paths.data=/d", "seed=3"]
    assert runs.saved_choices(run) == {"data": "listops", "model": "lstm"}
    assert runs.saved_config(run).data.name == "arith"
    for read in (runs.saved_overrides, runs.saved_choices, runs.saved_config):
        with pytest.raises(UserError, match=r"is not a run folder \(it has no \.hydra/"):
            read(tmp_path)

    # evaluate inherits the run's data, whether RUN names the run or a checkpoint of it
    for given in (run, run / "checkpoints/best"):
        assert inherit_data([f"run={given}", "split=val"]) == [
            "data=listops", "data.train.size=9", "paths.data=/d", f"run={given}", "split=val"]
    assert inherit_data([f"run=[{run},{run}]", "data=arith"]) == ["paths.data=/d", f"run=[{run},{run}]", "data=arith"]
    assert inherit_data([f"run={tmp_path / 'nowhere'}"]) == [f"run={tmp_path / 'nowhere'}"]
    # finetune inherits the model its checkpoint describes
    assert inherit_model([f"init={run}"]) == ["model=gru", "model.dropout=0.0", "data.tokenizer=char", f"init={run}"]


def test_the_console_hides_progress_lines_while_the_bar_shows(monkeypatch):
    """As conf/hydra/job_logging/msr.yaml wires it (msr.log keeps them; its handler is left out here)."""
    from msr.conf_dir import CONF_DIR
    from msr.train.progress import Progress

    settings = yaml.safe_load((CONF_DIR / "hydra/job_logging/msr.yaml").read_text())
    configurator = logging.config.DictConfigurator(settings)
    filters = configurator.config["filters"]
    for name in filters:  # as dictConfig does, without replacing this process's own logging
        filters[name] = configurator.configure_filter(filters[name])
    handler = configurator.configure_handler(configurator.config["handlers"]["console"])
    progress_line = logging.makeLogRecord({"name": "msr.progress", "msg": "step 1/2", "levelno": logging.INFO})
    other_line = logging.makeLogRecord({"name": "msr", "msg": "val loss", "levelno": logging.INFO})
    assert handler.filter(progress_line) and handler.filter(other_line)
    monkeypatch.setattr(Progress, "bar_shown", True)
    assert not handler.filter(progress_line) and handler.filter(other_line)
    assert not handler.filter(logging.makeLogRecord({"name": "msr", "msg": "error", "file_only": True}))


def test_the_cli_starts_without_torch_or_hydra():
    code = ("import sys, msr.cli; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'hydra', 'omegaconf'}))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout == "[]\n"


def test_runs_started_in_the_same_second_each_claim_a_folder(tmp_path, monkeypatch):
    import time

    from msr.runs import claim_folder

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(time, "strftime", lambda fmt, *a: {"%Y-%m-%d": "2026-12-04", "%H-%M-%S": "21-00-00"}[fmt])
    claimed = [claim_folder("train", ["seed=1"], multirun=False) for _ in range(3)]
    assert claimed == [["hydra.run.dir=outputs/train/2026-12-04/21-00-00"],
                       ["hydra.run.dir=outputs/train/2026-12-04/21-00-00-1"],
                       ["hydra.run.dir=outputs/train/2026-12-04/21-00-00-2"]]
    assert claim_folder("train", [], multirun=True) == ["hydra.sweep.dir=outputs/multirun/train/2026-12-04/21-00-00"]
    assert claim_folder("train", ["hydra.run.dir=mine"], multirun=False) == []  # placed by the user


@pytest.mark.slow  # over 6 s; CI runs it
def test_three_runs_started_together_get_three_folders(tmp_path):
    import subprocess
    import sys

    from conftest import TINY, TINY_MODEL

    args = [*TINY, *TINY_MODEL["gru"], "trainer.max_steps=3"]
    processes = [subprocess.Popen([sys.executable, "-m", "msr.cli", "train", *args, f"seed={seed}"], cwd=tmp_path,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for seed in range(3)]
    for process in processes:
        assert process.wait(timeout=180) == 0, process.stderr.read()
    folders = sorted(tmp_path.glob("outputs/train/*/*"))
    assert len(folders) == 3
    seeds = sorted(json.loads((f / "metrics.json").read_text())["seed"] for f in folders)
    assert seeds == [0, 1, 2]  # each folder holds its own run, whole
