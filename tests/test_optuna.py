"""Optuna studies (`msr train -m hydra/sweeper=optuna ...`): each trial a job of the sweep, the best
one in optimization_results.yaml, a killed study resumed to n_trials in all, pruning, the
model-conditional search space, and the refusals of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import read_metrics, run_msr
from test_sweeps import SWEEP, files_of

optuna = pytest.importorskip("optuna")

from msr import sweeps  # noqa: E402

STUDY = [*SWEEP, "hydra/sweeper=optuna", "hydra.sweeper.seed=0", "trainer.log_every=3"]
SPACE = ["optimizer.lr=tag(log,interval(1e-4,1e-1))", "model.dropout=interval(0,0.3)"]


def study_folder(root: Path) -> Path:
    [folder] = list(root.glob("outputs/multirun/train/*/*"))
    return folder


def load(folder: Path):
    return optuna.load_study(study_name=sweeps.STUDY_NAME, storage=sweeps.study_storage(folder))


def stop_trial(monkeypatch, number: int, at_step: int) -> None:
    """Job `number` stops at `at_step` as Ctrl-C would stop it (with its checkpoint), ending the study."""
    import msr.commands.train as train
    from hydra.core.hydra_config import HydraConfig

    from msr.errors import Paused, Stopped

    original = train.run

    def run(cfg, run_dir):
        if HydraConfig.get().job.num != number or cfg.resume:
            return original(cfg, run_dir)
        cfg.trainer.stop_at = at_step
        try:
            return original(cfg, run_dir)
        except Paused:
            raise Stopped() from None

    monkeypatch.setattr(train, "run", run)


@pytest.mark.slow
def test_a_killed_study_resumes_to_n_trials_and_names_the_best(in_tmp, capsys, monkeypatch):
    stop_trial(monkeypatch, number=2, at_step=3)
    assert run_msr("train", "-m", *STUDY, "hydra.sweeper.n_trials=4", *SPACE) == 130
    folder = study_folder(in_tmp)
    assert [(r["job"], r["status"]) for r in sweeps.read_manifest(folder)] == [
        (0, "completed"), (1, "completed"), (2, "interrupted")]
    assert not sweeps.is_finished(folder) and not (folder / "3").exists()
    assert "msr: the sweep stopped; resume with: msr train -m " in capsys.readouterr().err
    first_two = {n: files_of(folder / n) for n in "01"}
    interrupted = load(folder).trials[2]
    assert interrupted.state == optuna.trial.TrialState.RUNNING

    monkeypatch.undo()
    assert run_msr("train", "-m", *STUDY, "hydra.sweeper.n_trials=4", *SPACE, f"resume={folder}") == 0
    assert "0 trials" not in capsys.readouterr().err
    study = load(folder)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 4
    assert study.trials[2].params == interrupted.params  # the same trial, gone on from its checkpoint
    [resume] = [json.loads(line) for line in (folder / "2/resumes.jsonl").read_text().splitlines()]
    assert resume["step"] == 3 and read_metrics(folder / "2")["steps"] == 6
    assert {n: files_of(folder / n) for n in "01"} == first_two  # not a byte of them touched
    jobs = sweeps.read_manifest(folder)
    assert [(r["job"], r["status"]) for r in jobs] == [(n, "completed") for n in range(4)]
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["0", "1", "2", "3"]
    assert sweeps.is_finished(folder)

    scores = {n: read_metrics(folder / str(n))["metrics"]["val/accuracy"] for n in range(4)}
    assert [r["objective"] for r in jobs] == [scores[n] for n in range(4)]
    assert [t.value for t in study.trials] == [scores[n] for n in range(4)]
    results = yaml.safe_load((folder / "optimization_results.yaml").read_text())
    assert results["name"] == "optuna" and results["best_value"] == max(scores.values())
    best = results["best_trial"]
    assert scores[best] == max(scores.values()) and results["best_params"] == study.trials[best].params
    lr = results["best_params"]["optimizer.lr"]
    assert 1e-4 <= lr <= 1e-1 and f"optimizer.lr={lr}" in jobs[best]["overrides"]


def test_a_pruned_trial_ends_pruned_in_its_record_the_manifest_and_the_study(in_tmp):
    always = "hydra.sweeper.pruner={_target_:optuna.pruners.ThresholdPruner,lower:2.0}"  # accuracy < 2: prune
    assert run_msr("train", "-m", *STUDY, "hydra.sweeper.n_trials=1", "model.dropout=interval(0,0.3)", always) == 0
    folder = study_folder(in_tmp)
    record = read_metrics(folder / "0")
    assert record["status"] == "pruned" and "pruned by the study's pruner at step 3" in record["reason"]
    assert [(r["job"], r["status"]) for r in sweeps.read_manifest(folder)] == [(0, "pruned")]
    [trial] = load(folder).trials
    assert trial.state == optuna.trial.TrialState.PRUNED and list(trial.intermediate_values) == [3]
    assert [json.loads(line)["step"] for line in (folder / "0/history.jsonl").read_text().splitlines()][-1] == 3
    assert sweeps.is_finished(folder) and not (folder / "optimization_results.yaml").exists()


@pytest.mark.slow
def test_model_sizes_are_sampled_only_for_the_models_that_have_them(in_tmp):
    # the sizes of either model, and the Transformer's fixed ones, given in the sweeper's config
    sizes = 'model.hidden_size:"choice(16,32)",model.d_model:"choice(16,32)",model.n_layers:1,model.n_heads:2'
    base = [o for o in STUDY if not o.startswith(("model=", "model."))]
    assert run_msr("train", "-m", *base, "hydra.sweeper.n_trials=4", "hydra.sweeper.sampler=random",
                   "model=choice(lstm,transformer)", f"hydra.sweeper.params={{{sizes}}}") == 0
    folder = study_folder(in_tmp)
    trials = load(folder).trials
    models = {t.params["model"] for t in trials}
    assert models == {"lstm", "transformer"}, "seed 0 samples both models"
    for trial, job in zip(trials, sweeps.read_manifest(folder)):
        saved = yaml.safe_load((folder / str(trial.number) / ".hydra/config.yaml").read_text())["model"]
        if trial.params["model"] == "transformer":
            assert set(trial.params) == {"model", "model.d_model"} and "model.n_layers=1" in job["overrides"]
            assert saved["d_model"] == trial.params["model.d_model"] and saved["n_layers"] == 1
        else:  # the Transformer's fixed sizes (model.n_layers=1 ...) are not given to the LSTM either
            assert set(trial.params) == {"model", "model.hidden_size"} and "model.n_layers=1" not in job["overrides"]
            assert saved["hidden_size"] == trial.params["model.hidden_size"] and "d_model" not in saved
        assert job["status"] == "completed"


@pytest.mark.parametrize("override, message", [
    ("model.dropout=interval(low,0.3", "cannot parse override: no viable alternative at input 'interval(low,0.3'"),
    ('hydra.sweeper.params={model.dropout:"interval(0,"}', "the Optuna search space does not parse: "),
    ("model.dropout=interval(0.3,0.1)", "model.dropout=interval(0.3,0.1): an interval needs start < end"),
    ("optimizer.lr=tag(log,interval(0,0.1))", "(and start > 0 on a log scale); the Optuna sweeper takes choice("),
    ("model.dropout=interval(a,b)", "cannot parse override: Error parsing override 'model.dropout=interval(a,b)'"),
    ("hydra.sweeper.n_trials=0", "hydra.sweeper.n_trials=0 would run no trial: give a number >= 1"),
    ("hydra.sweeper.pruner=sometimes", "hydra.sweeper.pruner=sometimes is not known: give one of median"),
])
def test_bad_study_settings_are_one_line_errors(override, message, in_tmp, capsys):
    assert run_msr("train", "-m", *STUDY, "hydra.sweeper.n_trials=2", override) == 2
    err = capsys.readouterr().err
    assert message in err and err.strip().count("\n") == 0 and err.startswith("msr: error: ")
    assert not list(in_tmp.glob("outputs/multirun/train/*/*/0"))


def test_an_objective_no_run_reports_is_an_error_at_the_end(in_tmp, capsys):
    assert run_msr("train", "-m", *STUDY, "hydra.sweeper.n_trials=1", "model.dropout=interval(0,0.3)",
                   "sweep.objective=val/bleu") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("msr: error: sweep.objective=val/bleu: no trial reports it; its runs report ")
    assert "val/accuracy" in err
    folder = study_folder(in_tmp)
    assert [(r["job"], r["status"]) for r in sweeps.read_manifest(folder)] == [(0, "failed")]
    assert load(folder).trials[0].state == optuna.trial.TrialState.FAIL


def test_the_direction_follows_the_objective_unless_given():
    assert sweeps.objective_direction("val/loss", None) == "minimize"
    assert sweeps.objective_direction("val/accuracy", None) == "maximize"
    assert sweeps.objective_direction("val/loss", "maximize") == "maximize"
