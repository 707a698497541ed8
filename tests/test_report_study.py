"""msr report on an Optuna sweep: the study's trials, best trial, importances and plots."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from conftest import TINY, run_msr
from test_report import make_sweep, train_config

optuna = pytest.importorskip("optuna")

from msr import sweeps  # noqa: E402
from msr.report.cli import main  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"
# (lr, hidden_size, objective): the objective follows the learning rate, barely the size
TRIALS = [(1e-4, 16, 0.20), (1e-3, 64, 0.61), (3e-3, 16, 0.89), (1e-2, 64, 0.48), (3e-2, 16, 0.11), (3e-3, 64, 0.90)]


def add_study(sweep: Path, trials, pruned: int = 0) -> None:
    study = optuna.create_study(study_name=sweeps.STUDY_NAME, storage=sweeps.study_storage(sweep), direction="maximize")
    space = {"optimizer.lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
             "model.hidden_size": optuna.distributions.IntDistribution(16, 64)}
    for lr, hidden, value in trials:
        study.add_trial(optuna.trial.create_trial(params={"optimizer.lr": lr, "model.hidden_size": hidden},
                                                  distributions=space, value=value))
    for _ in range(pruned):
        study.add_trial(optuna.trial.create_trial(params={"optimizer.lr": 0.05, "model.hidden_size": 16},
                                                  distributions=space, state=optuna.trial.TrialState.PRUNED,
                                                  intermediate_values={3: 0.05}))


def study_sweep(root: Path, trials=TRIALS, pruned: int = 1) -> Path:
    runs = [(train_config("lstm", 0, lr) | {"model": {"name": "lstm", "hidden_size": h}}, {"test/accuracy": v})
            for lr, h, v in trials]
    sweep = make_sweep(root, runs)
    add_study(sweep, trials, pruned)
    return sweep


def test_the_report_of_a_study_names_its_best_trial_counts_and_importances(tmp_path):
    sweep = study_sweep(tmp_path / "sweep")
    assert main([str(sweep)]) == 0
    text = (sweep / "report.md").read_text()
    assert "Optuna study (maximize): 7 trials — 6 complete, 1 pruned." in text
    assert "Best: trial 5, objective 0.9, with `optimizer.lr=0.003`, `model.hidden_size=64`." in text
    rows = {line.split("|")[1].strip(" `"): float(line.split("|")[2]) for line in text.splitlines()
            if line.startswith("| `")}
    assert set(rows) == {"optimizer.lr", "model.hidden_size"}
    assert math.isclose(sum(rows.values()), 1.0, abs_tol=2e-3) and rows["optimizer.lr"] > 0.8
    for name in ("optimization_history.png", "param_importances.png"):
        assert (sweep / name).read_bytes().startswith(PNG) and f"]({name})" in text
    assert text.count("(optimization_history.png)") == 1  # in the study's section, not again under Plots


def test_one_completed_trial_has_no_importances_and_no_error(tmp_path, caplog):
    sweep = study_sweep(tmp_path / "sweep", TRIALS[:1], pruned=0)
    with caplog.at_level("INFO", logger="msr"):
        assert main([str(sweep)]) == 0
    assert "No importances: 1 completed trial(s)" in (sweep / "report.md").read_text()
    assert (sweep / "optimization_history.png").is_file() and not (sweep / "param_importances.png").exists()
    assert "no param_importances.png" in caplog.text


def test_no_plots_keeps_the_study_section_and_a_grid_sweep_has_none(tmp_path):
    sweep = study_sweep(tmp_path / "sweep")
    assert main([str(sweep), "--no-plots"]) == 0
    assert "## Study" in (sweep / "report.md").read_text() and not (sweep / "optimization_history.png").exists()
    grid = make_sweep(tmp_path / "grid", [(train_config("gru", s), {"test/accuracy": 0.5}) for s in range(2)])
    assert main([str(grid)]) == 0
    assert "## Study" not in (grid / "report.md").read_text()
    assert not any((grid / name).exists() for name in ("optimization_history.png", "param_importances.png"))


@pytest.mark.slow
def test_parallel_trials_in_joblib_workers_share_one_study(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_msr("train", "-m", *TINY, "hydra/sweeper=optuna", "hydra.sweeper.n_trials=4", "hydra.sweeper.seed=0",
                   "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "optimizer.lr=tag(log,interval(1e-3,1e-1))",
                   "hydra.sweep.dir=study") == 0
    study = optuna.load_study(study_name=sweeps.STUDY_NAME, storage=sweeps.study_storage(tmp_path / "study"))
    assert sorted(t.number for t in study.trials) == [0, 1, 2, 3]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    results = yaml.safe_load((tmp_path / "study/optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(study.best_value)
