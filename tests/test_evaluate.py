"""`msr evaluate` and `msr generate` on tiny trained runs: files, numbers, data overrides,
ensembles, decoding options and the errors a wrong run or option gets."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import TINY, TINY_MODEL, read_metrics, run_msr


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Trained once for the module: arith (LSTM), arith with a scratchpad, logic (GRU)."""
    root = tmp_path_factory.mktemp("runs")
    common = [*TINY, "trainer.max_steps=60", "trainer.eval_every=30"]
    for name, extra in {"arith": [*TINY_MODEL["lstm"]],
                        "scratchpad": [*TINY_MODEL["lstm"], "data.scratchpad=true"],
                        "logic": [*TINY_MODEL["gru"], "data=logic"]}.items():
        assert run_msr("train", *common, *extra, f"hydra.run.dir={root / name}") == 0
    return root


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_evaluate_rescores_the_run_and_leaves_predictions_and_a_plot(runs, in_tmp, capsys):
    assert run_msr("evaluate", f"run={runs / 'arith'}", "hydra.run.dir=ev") == 0
    trained, scored = read_metrics(runs / "arith"), read_metrics(in_tmp / "ev")
    # greedy decoding gives the same exact match as training's teacher-forced test score
    assert scored["metrics"]["test/accuracy"] == pytest.approx(trained["metrics"]["test/accuracy"])
    assert scored["accuracy_by_steps"] == pytest.approx(trained["accuracy_by_steps"])
    for metrics in (trained["metrics"], scored["metrics"]):  # beside exact match, never below it
        assert metrics["test/oracle_length_accuracy"] >= metrics["test/accuracy"]
    predictions = lines(in_tmp / "ev/predictions.jsonl")
    assert len(predictions) == 40 and set(predictions[0]) == {"input", "target", "prediction", "correct", "steps",
                                                              "logprob", "target_logprob"}
    assert sum(p["correct"] for p in predictions) / 40 == scored["metrics"]["test/accuracy"]
    assert all(p["correct"] == (p["prediction"] == p["target"]) for p in predictions)
    detail = scored["steps_detail"]
    assert sum(row["n"] for row in detail.values()) == 40
    assert all(row["ci95"][0] <= row["accuracy"] <= row["ci95"][1] for row in detail.values())
    assert (in_tmp / "ev/accuracy_by_steps.png").read_bytes()[:4] == b"\x89PNG"
    assert f"run={runs / 'arith'}" in (in_tmp / "ev/.hydra/overrides.yaml").read_text()  # the source run
    assert scored["metrics"]["test/perplexity"] > 1 and "accuracy by reasoning steps" in capsys.readouterr().out


def test_evaluate_on_longer_steps_than_training_saw(runs, in_tmp):
    assert run_msr("evaluate", f"run={runs / 'arith'}", "data.test.max_steps=7", "data.test.size=70",
                   "hydra.run.dir=ev") == 0
    scored = read_metrics(in_tmp / "ev")
    assert set(scored["accuracy_by_steps"]) == {str(k) for k in range(1, 8)} and scored["examples"] == 70
    assert scored["compounding_fit"]["steps"] == list(range(1, 8))


def test_classification_targets_get_precision_recall_and_a_confusion_matrix(runs, in_tmp, capsys):
    assert run_msr("evaluate", f"run={runs / 'logic'}", "hydra.run.dir=ev") == 0
    scored = read_metrics(in_tmp / "ev")
    report = scored["classification"]
    assert set(report["per_class"]) <= {"True", "False", "Unknown"}
    assert sum(map(sum, report["confusion"]["matrix"])) == 40
    assert report["accuracy"] == pytest.approx(scored["metrics"]["test/accuracy"])
    assert "confusion" in capsys.readouterr().out


def test_scratchpad_targets_get_answer_accuracy_and_sacrebleu_scores(runs, in_tmp):
    assert run_msr("evaluate", f"run={runs / 'scratchpad'}", "hydra.run.dir=ev") == 0
    scored = read_metrics(in_tmp / "ev")
    assert "test/answer_accuracy" in scored["metrics"]
    text = scored["text_metrics"]
    assert {"bleu", "chrf", "ter", "distinct_1", "distinct_2", "repetition_rate"} <= set(text)
    assert "nrefs:1" in text["signatures"]["bleu"]


@pytest.fixture(scope="module")
def greedy(runs, tmp_path_factory) -> list[dict]:
    """The arith run's test predictions, decoded greedily (evaluate's default)."""
    folder = tmp_path_factory.mktemp("greedy")
    assert run_msr("evaluate", f"run={runs / 'arith'}", f"hydra.run.dir={folder / 'ev'}") == 0
    return lines(folder / "ev/predictions.jsonl")


def same_decoding(a: list[dict], b: list[dict]) -> bool:
    return [p["prediction"] for p in a] == [p["prediction"] for p in b] and \
        [p["logprob"] for p in a] == pytest.approx([p["logprob"] for p in b], abs=1e-4)


@pytest.mark.parametrize("decoding", [["decode.strategy=beam", "decode.beam_size=3"],
                                      ["decode.strategy=sample", "decode.self_consistency=3", "decode.temperature=0.5"]])
def test_beam_and_self_consistency_run_end_to_end(decoding, runs, greedy, in_tmp):
    assert run_msr("evaluate", f"run={runs / 'arith'}", *decoding, "hydra.run.dir=ev") == 0
    predictions = lines(in_tmp / "ev/predictions.jsonl")
    assert len(predictions) == 40
    if "decode.self_consistency=3" in decoding:
        assert all(1 <= p["votes"] <= 3 for p in predictions)
        assert max(p["votes"] for p in predictions) >= 2  # three samples voted (one would give 1 vote each)
        # sampling nearly without noise, the three samples are greedy's answer: all three votes for it
        assert run_msr("evaluate", f"run={runs / 'arith'}", *decoding, "decode.temperature=1e-4",
                       "hydra.run.dir=cold") == 0
        cold = lines(in_tmp / "cold/predictions.jsonl")
        assert all(p["votes"] == 3 for p in cold) and same_decoding(cold, greedy)
    else:
        # a beam's score is its sequence's log-probability: the same sequence scores as greedy's
        assert all(b["logprob"] == pytest.approx(g["logprob"], abs=1e-4)
                   for b, g in zip(predictions, greedy) if b["prediction"] == g["prediction"])
        # and a beam of one is greedy search, through the beam code
        assert run_msr("evaluate", f"run={runs / 'arith'}", "decode.strategy=beam", "decode.beam_size=1",
                       "hydra.run.dir=one") == 0
        assert same_decoding(lines(in_tmp / "one/predictions.jsonl"), greedy)
        # beams are ranked by logprob / length**length_penalty, which greedy never looks at: a strong
        # penalty makes the beam prefer longer answers than greedy's (this run's are mostly empty)
        assert run_msr("evaluate", f"run={runs / 'arith'}", *decoding, "decode.length_penalty=3",
                       "hydra.run.dir=long") == 0
        longer = [len(b["prediction"].split()) > len(g["prediction"].split())
                  for b, g in zip(lines(in_tmp / "long/predictions.jsonl"), greedy)]
        assert sum(longer) >= 20


def test_an_ensemble_needs_one_vocabulary(runs, greedy, in_tmp, capsys):
    arith = runs / "arith"
    assert run_msr("evaluate", f"run=[{arith},{arith}]", "hydra.run.dir=ev") == 0
    assert read_metrics(in_tmp / "ev")["metrics"]["test/accuracy"] == read_metrics(arith)["metrics"]["test/accuracy"]
    assert same_decoding(lines(in_tmp / "ev/predictions.jsonl"), greedy)  # a run with itself is that run
    assert run_msr("evaluate", f"run=[{arith},{runs / 'logic'}]", "hydra.run.dir=ev2") == 2
    assert "another vocabulary" in capsys.readouterr().err


def test_a_folder_without_checkpoints_or_with_foreign_weights_is_a_clear_error(runs, in_tmp, capsys):
    (in_tmp / "empty").mkdir()
    assert run_msr("evaluate", "run=empty", "hydra.run.dir=ev") == 2
    assert "has no checkpoints/best/model.safetensors" in capsys.readouterr().err
    assert run_msr("evaluate", "run=nowhere", "hydra.run.dir=ev2") == 2
    assert "run='nowhere' is not allowed: must be an existing run folder" in capsys.readouterr().err
    # a checkpoint whose meta.json names another model family than its weights
    shutil.copytree(runs / "arith", in_tmp / "mixed")
    meta_path = in_tmp / "mixed/checkpoints/best/meta.json"
    meta = json.loads(meta_path.read_text())
    meta["model"] = {"name": "transformer", "d_model": 32, "n_layers": 1, "n_heads": 2, "d_ff": 64}
    meta_path.write_text(json.dumps(meta))
    assert run_msr("evaluate", "run=mixed", "hydra.run.dir=ev3") == 2
    assert "the weights do not fit the transformer model" in capsys.readouterr().err


def test_self_consistency_needs_sampling(runs, capsys):
    assert run_msr("evaluate", f"run={runs / 'arith'}", "decode.self_consistency=5") == 2
    assert "decode.self_consistency=5 is not allowed: needs decode.strategy=sample" in capsys.readouterr().err


def test_generate_writes_ranked_continuations(runs, in_tmp, capsys):
    (in_tmp / "prompts.txt").write_text("3 + 4 =\n\n7 * 2 - 1 =\n")
    assert run_msr("generate", f"run={runs / 'arith'}", "prompts_file=prompts.txt", "decode.strategy=beam",
                   "decode.num_return_sequences=2", "hydra.run.dir=gen") == 0
    records = lines(in_tmp / "gen/generations.jsonl")
    assert [(r["prompt"], r["rank"]) for r in records] == [("3 + 4 =", 0), ("3 + 4 =", 1), ("7 * 2 - 1 =", 0),
                                                          ("7 * 2 - 1 =", 1)]
    assert records[0]["logprob"] >= records[1]["logprob"]
    assert "3 + 4 = →" in capsys.readouterr().out
    assert run_msr("generate", f"run={runs / 'arith'}", "prompt=7 * 2 - 1 =", "hydra.run.dir=one") == 0
    assert [r["prompt"] for r in lines(in_tmp / "one/generations.jsonl")] == ["7 * 2 - 1 ="]
    assert run_msr("generate", f"run={runs / 'arith'}", "hydra.run.dir=gen2") == 2
    assert "give exactly one of prompt=TEXT and prompts_file=FILE" in capsys.readouterr().err


def test_examples_longer_than_a_transformer_reads_are_refused_in_one_line(in_tmp, capsys):
    assert run_msr("train", *TINY, *TINY_MODEL["transformer"], "model.max_len=24", "trainer.max_steps=5",
                   "hydra.run.dir=run") == 0
    capsys.readouterr()
    assert run_msr("evaluate", "run=run", "data.test.max_steps=12", "hydra.run.dir=ev") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("msr: error: ") and "longer than the run's model.max_len=24 tokens" in err
    assert "data.test.max_steps" in err and read_metrics(in_tmp / "ev")["status"] == "failed"
