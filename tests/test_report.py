"""msr report: fixture run folders written by hand (known numbers), aggregated, compared and plotted."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from msr.errors import UserError
from msr.report.cli import main
from msr.report.paired import bootstrap_interval, mcnemar_exact


def make_run(folder: Path, config: dict, metrics: dict, status: str = "completed", command: str = "train",
             history: list[dict] | None = None, predictions: list[dict] | None = None, **record) -> Path:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    record = {"command": command, "status": status, "metrics": metrics, **record}
    (folder / "metrics.json").write_text(json.dumps(record))
    if history:
        (folder / "history.jsonl").write_text("".join(json.dumps(row) + "\n" for row in history))
    if predictions:
        (folder / "predictions.jsonl").write_text("".join(json.dumps(row) + "\n" for row in predictions))
    return folder


def train_config(model: str, seed: int, lr: float = 0.003) -> dict:
    return {"seed": seed, "model": {"name": model, "hidden_size": 16}, "optimizer": {"name": "adamw", "lr": lr},
            "paths": {"data": "${oc.env:MSR_DATA,data}"},
            "sweep": {"objective": "test/accuracy", "direction": "maximize"},
            "resume": ""}


def make_sweep(root: Path, runs: list[tuple[dict, dict]], **kwargs) -> Path:
    """A sweep folder: multirun.yaml and one job folder per (config, metrics)."""
    root.mkdir(parents=True)
    (root / "multirun.yaml").write_text("hydra: {}\n")
    for job, (config, metrics) in enumerate(runs):
        make_run(root / str(job), config, metrics, **kwargs)
    return root


def read_csv(path: Path) -> list[dict]:
    return list(csv.DictReader(path.open()))


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    """A report without a sweep folder goes to ./report: here, never into the repository."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def seeds_sweep(tmp_path) -> Path:
    """lstm at 0.5, 0.7, 0.9 and gru at 0.2, 0.3, 0.4 over seeds 0-2, and a failed gru seed 3."""
    runs = [(train_config("lstm", s), {"test/accuracy": a, "test/loss": 1.0 + s})
            for s, a in enumerate([0.5, 0.7, 0.9])]
    runs += [(train_config("gru", s), {"test/accuracy": a, "test/loss": 2.0}) for s, a in enumerate([0.2, 0.3, 0.4])]
    sweep = make_sweep(tmp_path / "sweep", runs)
    make_run(sweep / "6", train_config("gru", 3), {}, status="failed", reason="loss is NaN at step 12")
    return sweep


def test_a_job_without_metrics_is_listed_with_what_the_manifest_says(seeds_sweep):
    (seeds_sweep / "7" / ".hydra").mkdir(parents=True)
    (seeds_sweep / "7" / ".hydra" / "config.yaml").write_text(yaml.safe_dump(train_config("rnn", 0)))
    jobs = [{"job": 7, "status": "running", "reason": None}, {"job": 7, "status": "failed", "reason": "bad value"}]
    (seeds_sweep / "sweep.jsonl").write_text("".join(json.dumps(job) + "\n" for job in jobs))
    main([str(seeds_sweep), "--no-plots"])
    job = read_csv(seeds_sweep / "runs.csv")[-1]
    assert (job["folder"][-1], job["status"], job["reason"], job["model.name"]) == ("7", "failed", "bad value", "rnn")
    assert len(read_csv(seeds_sweep / "report.csv")) == 2


def test_groups_by_seed_with_hand_computed_mean_and_std(seeds_sweep, capsys):
    assert main([str(seeds_sweep), "--no-plots"]) == 0
    rows = read_csv(seeds_sweep / "report.csv")
    assert [r["model.name"] for r in rows] == ["lstm", "gru"]  # sorted by the objective, best first
    assert list(rows[0])[:4] == ["model.name", "n", "test/accuracy_mean", "test/accuracy_std"]
    lstm, gru = rows
    assert lstm["n"] == "3" and float(lstm["test/accuracy_mean"]) == pytest.approx(0.7)
    assert float(lstm["test/accuracy_std"]) == pytest.approx(0.2)
    assert float(lstm["test/loss_mean"]) == pytest.approx(2.0) and float(lstm["test/loss_std"]) == pytest.approx(1.0)
    # the failed run is listed, never averaged in
    assert gru["n"] == "3" and float(gru["test/accuracy_mean"]) == pytest.approx(0.3)
    assert float(gru["test/accuracy_std"]) == pytest.approx(0.1)
    runs = read_csv(seeds_sweep / "runs.csv")
    assert len(runs) == 7
    failed = [r for r in runs if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["folder"].endswith("6") and failed[0]["group"] == ""
    assert failed[0]["reason"] == "loss is NaN at step 12"
    assert [r["seed"] for r in runs if r["model.name"] == "lstm"] == ["0", "1", "2"]
    markdown = (seeds_sweep / "report.md").read_text()
    assert "| lstm | 3 | 0.7000 ± 0.2000 |" in markdown and "| gru | 3 | 0.3000 ± 0.1000 |" in markdown
    assert "Not averaged in" in markdown and "loss is NaN at step 12" in markdown
    printed = capsys.readouterr().out
    assert "0.7000 ± 0.2000" in printed and "not averaged in" in printed
    assert "sorted by test/accuracy (maximize)" in printed


def test_single_run_groups_have_a_blank_std_and_loss_sorts_ascending(tmp_path):
    sweep = make_sweep(tmp_path / "sweep", [(train_config("lstm", 0, lr=lr), {"test/accuracy": 0.5, "test/loss": loss})
                                            for lr, loss in [(1e-3, 2.0), (1e-2, 1.0), (1e-1, 3.0)]])
    main([str(sweep), "--metric", "test/loss", "--no-plots"])
    rows = read_csv(sweep / "report.csv")
    assert [r["optimizer.lr"] for r in rows] == ["0.01", "0.001", "0.1"]
    assert list(rows[0]) == ["optimizer.lr", "n", "test/loss_mean", "test/loss_std"]
    assert rows[0]["test/loss_std"] == "" and "| 0.01 | 1 | 1.0000 |" in (sweep / "report.md").read_text()


def test_group_by_and_filter(seeds_sweep, tmp_path):
    out = tmp_path / "out"
    main([str(seeds_sweep), "--group-by", "seed", "--filter", "model=gru", "--out", str(out), "--no-plots"])
    rows = read_csv(out / "report.csv")
    assert [(r["seed"], r["n"], float(r["test/accuracy_mean"])) for r in rows] == [("2", "1", 0.4), ("1", "1", 0.3),
                                                                                 ("0", "1", 0.2)]
    assert {r["status"] for r in read_csv(out / "runs.csv")} == {"completed", "failed"}  # the failed gru stays listed


def test_objective_from_the_sweep_config_and_unfinished_runs_apart(tmp_path):
    statuses = ["completed", "completed", "pruned", "interrupted", "running"]
    runs = [({**train_config("lstm", 0, lr=lr), "sweep": {"objective": "val/loss", "direction": "minimize"}},
             {"val/loss": loss, "val/accuracy": 0.5}) for lr, loss in [(0.1, 3.0), (0.01, 1.5), (0.001, 0.1),
                                                                      (0.002, 0.1), (0.003, 0.1)]]
    sweep = make_sweep(tmp_path / "sweep", [])
    for job, ((config, metrics), status) in enumerate(zip(runs, statuses)):
        make_run(sweep / str(job), config, metrics, status=status)
    main([str(sweep), "--no-plots"])
    rows = read_csv(sweep / "report.csv")
    assert list(rows[0])[2] == "val/loss_mean"  # the sweep's objective comes first and sorts, minimized
    assert [r["optimizer.lr"] for r in rows] == ["0.01", "0.1"]
    assert [r["status"] for r in read_csv(sweep / "runs.csv")] == statuses
    markdown = (sweep / "report.md").read_text()
    assert all(f"| {status} |" in markdown for status in statuses[2:])


def test_globs_and_numeric_filters(seeds_sweep, tmp_path):
    out = tmp_path / "out"
    main([str(seeds_sweep / "[0-4]"), "--filter", "optimizer.lr=3e-3", "--out", str(out), "--no-plots"])
    assert [(r["model.name"], r["n"]) for r in read_csv(out / "report.csv")] == [("lstm", "3"), ("gru", "2")]


def test_steps_band_is_wilson_of_pooled_counts_when_steps_detail_is_there(tmp_path):
    from msr.eval.scores import wilson_interval
    from msr.report.aggregate import Group
    from msr.report.collect import Run
    from msr.report.plots import steps_curve

    details = [{"1": {"n": 10, "correct": c}, "2": {"n": 5, "correct": 0}} for c in (9, 7)]
    runs = [Run(tmp_path, {"status": "completed", "steps_detail": detail}, {}) for detail in details]
    points, band = steps_curve(Group({}, runs))
    assert points == [(1, 0.8, *wilson_interval(16, 20)), (2, 0.0, *wilson_interval(0, 10))]
    assert band.startswith("Wilson")
    for run, by_steps in zip(runs, [{"1": 0.5}, {"1": 0.7}]):
        run.record = {"status": "completed", "accuracy_by_steps": by_steps}
    ((steps, mean, low, high),), band = steps_curve(Group({}, runs))
    assert (steps, mean) == (1, pytest.approx(0.6)) and high - mean == pytest.approx(0.1414213562) and "std" in band


def test_plots_are_written_as_png(tmp_path):
    history = [{"step": 10, "val/loss": 2.5, "val/accuracy": 0.2}, {"step": 20, "train/loss": 2.0, "lr": 1e-3},
               {"step": 20, "val/loss": 2.0, "val/accuracy": 0.4}]
    detail = {"1": {"n": 10, "correct": 9}, "2": {"n": 10, "correct": 5}}
    runs = [(train_config("lstm", s, lr=lr), {"test/accuracy": 0.5 + s / 10})
            for lr in (1e-4, 1e-3, 1e-2) for s in (0, 1)]
    sweep = make_sweep(tmp_path / "sweep", runs, history=history, accuracy_by_steps={"1": 0.9, "2": 0.5},
                       steps_detail=detail)
    main([str(sweep)])
    for name in ("vs_optimizer.lr.png", "accuracy_by_steps.png", "training_curves.png"):
        assert (sweep / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"]({name})" in (sweep / "report.md").read_text()
    assert not list(sweep.glob(".*tmp*"))  # no temporary file left behind


def test_mcnemar_exact_by_hand():
    assert mcnemar_exact(7, 1) == pytest.approx(2 * (1 + 8) / 256) == pytest.approx(0.0703125)
    assert mcnemar_exact(1, 7) == mcnemar_exact(7, 1)
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(3, 3) == 1.0
    assert mcnemar_exact(5, 0) == pytest.approx(2 / 32)


def test_bootstrap_interval_is_seeded_and_brackets_the_difference():
    low, high = bootstrap_interval(7, 1, 40, 2000)
    assert (low, high) == bootstrap_interval(7, 1, 40, 2000)
    assert low < -6 / 40 < high <= 0.0


def predictions(right: list[bool]) -> list[dict]:
    return [{"input": f"{i} + 1 =", "target": str(i + 1), "prediction": "?", "correct": ok}
            for i, ok in enumerate(right)]


def test_paired_comparison_on_known_discordant_counts(tmp_path, capsys):
    """Seed 0: A alone right on 4, B alone right on 1; seed 1: A alone right on 3: b = 7, c = 1."""
    n = 20
    a_right = {0: [True] * 10 + [False] * 10, 1: [True] * 8 + [False] * 12}
    b_right = {0: [False] * 4 + [True] * 6 + [True] + [False] * 9, 1: [False] * 3 + [True] * 5 + [False] * 12}
    root = make_sweep(tmp_path / "sweep", [])
    for job, (model, right) in enumerate([("lstm", a_right[0]), ("lstm", a_right[1]), ("gru", b_right[0]),
                                          ("gru", b_right[1]), ("rnn", None)]):
        seed = job % 2
        make_run(root / str(job), train_config(model, seed), {"test/accuracy": sum(right or []) / n},
                 predictions=predictions(right) if right else None)
    main([str(root), "--no-plots"])
    (row,) = read_csv(root / "comparisons.csv")
    assert (row["a"], row["b"], row["run_pairs"], row["examples"]) == ("model.name=lstm", "model.name=gru", "2", "40")
    assert (row["a_right_b_wrong"], row["a_wrong_b_right"]) == ("7", "1")
    assert float(row["mcnemar_p"]) == pytest.approx(0.0703125)
    assert float(row["difference"]) == pytest.approx((1 - 7) / 40)
    assert float(row["accuracy_a"]) == pytest.approx(18 / 40) and float(row["accuracy_b"]) == pytest.approx(12 / 40)
    assert float(row["ci95_low"]) < -0.15 < float(row["ci95_high"])
    printed = capsys.readouterr().out
    assert "0.07031" in printed and "without predictions.jsonl: model.name=rnn" in printed
    assert "Paired comparisons" in (root / "report.md").read_text()


def test_no_comparison_on_different_examples(tmp_path, capsys):
    root = make_sweep(tmp_path / "sweep", [])
    make_run(root / "0", train_config("lstm", 0), {"test/accuracy": 0.9}, predictions=predictions([True, True]))
    other = predictions([True, False])
    other[0]["input"] = "something else ="
    make_run(root / "1", train_config("gru", 0), {"test/accuracy": 0.5}, predictions=other)
    main([str(root), "--no-plots"])
    assert read_csv(root / "comparisons.csv") == []
    assert "not scored on the same examples" in capsys.readouterr().out


def test_evaluate_runs_group_through_their_source_runs(tmp_path):
    trains = [make_run(tmp_path / "train" / str(job), train_config(model, seed), {"test/accuracy": 0.1})
              for job, (model, seed) in enumerate([("lstm", 0), ("lstm", 1), ("gru", 0), ("gru", 1)])]
    evaluations = tmp_path / "evaluate"
    for job, (source, accuracy) in enumerate(zip(trains, [0.6, 0.8, 0.3, 0.5])):
        config = {"run": str(source), "checkpoint": "best", "split": "test", "seed": 0,
                  "data": {"name": "arith", "test": {"max_steps": 8}}}
        make_run(evaluations / str(job), config, {"test/accuracy": accuracy}, command="evaluate",
                 source_runs=[str(source)], split="test")
    main([str(evaluations), "--no-plots", "--out", str(tmp_path / "out")])
    rows = read_csv(tmp_path / "out" / "report.csv")
    assert [(r["model.name"], r["n"]) for r in rows] == [("lstm", "2"), ("gru", "2")]
    assert float(rows[0]["test/accuracy_mean"]) == pytest.approx(0.7)
    assert float(rows[1]["test/accuracy_std"]) == pytest.approx(0.1414213562)
    runs = read_csv(tmp_path / "out" / "runs.csv")
    assert [r["seed"] for r in runs] == ["0", "1", "0", "1"]  # the training seeds, not the evaluation's own
    assert "run" not in runs[0]


def test_default_is_the_newest_sweep(tmp_path):
    sweeps = tmp_path / "outputs/multirun/train"
    old = make_sweep(sweeps / "2026-01-01/10-00-00", [(train_config("lstm", 0), {"test/accuracy": 0.1})])
    new = make_sweep(sweeps / "2026-01-02/09-00-00", [(train_config("gru", 0), {"test/accuracy": 0.2})])
    main(["--no-plots"])
    assert (new / "report.csv").is_file() and not (old / "report.csv").exists()
    main([str(old / "0"), str(new / "0"), "--no-plots"])  # several paths: ./report
    assert len(read_csv(tmp_path / "report" / "report.csv")) == 2


@pytest.mark.parametrize("args, message", [
    (["EMPTY"], "holds no run"),
    (["NOWHERE"], "does not exist"),
    (["SWEEP", "--metric", "val/bleu"],
     "--metric val/bleu: no completed run reports it; metrics there: test/accuracy, test/loss"),
    (["SWEEP", "--group-by", "optimizer.lrr"],
     "--group-by optimizer.lrr: no run has that config key; close ones: optimizer.lr"),
    (["SWEEP", "--filter", "model.name=rnn"],
     "--filter model.name=rnn matches no run; model.name is one of: gru, lstm"),
    (["GLOB"], "matches nothing"),
    (["SWEEP", "--bootstrap", "0"], "--bootstrap 0: give a number of resamples of at least 1"),
    (["SWEEP", "--filter", "model.name"], "give key=value"),
])
def test_bad_input_is_one_line(seeds_sweep, tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    places = {"EMPTY": str(tmp_path / "empty"), "NOWHERE": str(tmp_path / "nowhere"), "SWEEP": str(seeds_sweep),
              "GLOB": str(tmp_path / "nowhere*")}
    with pytest.raises(UserError) as error:
        main([places.get(a, a) for a in args] + ["--no-plots"])
    assert message in str(error.value) and "\n" not in str(error.value)
    assert not (seeds_sweep / "report.csv").exists()


def test_no_sweep_here_is_one_line():
    with pytest.raises(UserError, match="no sweep under outputs/multirun/"):
        main([])


def test_help_does_not_import_torch():
    code = ("import sys\nfrom msr.report.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules and 'matplotlib' not in sys.modules, 'heavy import'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: msr report") and "--group-by" in done.stdout


def test_report_does_not_import_torch(seeds_sweep):
    code = (f"import sys\nfrom msr.report.cli import main\nmain([{str(seeds_sweep)!r}])\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_a_hundred_runs_are_read_fast(tmp_path):
    """The issue's figure is ≤ 3 s for `msr report` on 100 runs, plots included (measured by hand:
    see the README); here the reading, grouping and paired tests alone, with room to spare."""
    runs = [(train_config(model, seed, lr=lr), {"test/accuracy": (seed + 1) / 10, "val/loss": 1.0})
            for model in ("lstm", "gru", "rnn", "transformer") for lr in (1e-4, 1e-3, 1e-2, 3e-2, 1e-1)
            for seed in range(5)]
    sweep = make_sweep(tmp_path / "sweep", runs, predictions=predictions([True, False] * 100))
    started = time.perf_counter()
    main([str(sweep), "--no-plots"])
    assert time.perf_counter() - started < 3.0
    assert len(read_csv(sweep / "report.csv")) == 20 and len(read_csv(sweep / "comparisons.csv")) == 19


def test_a_key_that_only_follows_another_is_no_column(tmp_path):
    """model.tie_embeddings differs between the model options, not within one: model.name says it all."""
    def config(model: str, seed: int) -> dict:
        cfg = train_config(model, seed)
        cfg["model"]["tie_embeddings"] = model == "transformer"
        return cfg

    runs = [(config(m, s), {"test/accuracy": 0.1 * s}) for m in ("lstm", "transformer") for s in range(2)]
    main([str(make_sweep(tmp_path / "sweep", runs)), "--no-plots"])
    [header, *_] = (tmp_path / "sweep" / "report.csv").read_text().splitlines()
    assert header.split(",")[:2] == ["model.name", "n"]
