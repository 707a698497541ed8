"""Knowledge distillation (distill.teacher=RUN): the loss against hand-computed values, what a
distilled run leaves, and the bad inputs refused before a run folder."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

import msr.device
from conftest import TINY, TINY_MODEL, read_metrics, run_msr
from msr.data.batching import IGNORE
from msr.train.distill import distillation_loss
from msr.train.loop import cross_entropy


def log_softmax(row: list[float]) -> list[float]:
    top = max(row)
    total = math.log(sum(math.exp(x - top) for x in row)) + top
    return [x - total for x in row]


def hand_loss(student, teacher, labels, temperature, alpha) -> float:
    """alpha * T^2 * KL(p_teacher || p_student) at temperature T, plus (1 - alpha) * CE, averaged
    over the positions whose label is not IGNORE, written out term by term."""
    terms = []
    for s, t, label in zip(student, teacher, labels):
        if label == IGNORE:
            continue
        log_p = log_softmax([x / temperature for x in t])
        log_q = log_softmax([x / temperature for x in s])
        kl = sum(math.exp(lp) * (lp - lq) for lp, lq in zip(log_p, log_q))
        ce = -log_softmax(s)[label]
        terms.append(alpha * temperature ** 2 * kl + (1 - alpha) * ce)
    return sum(terms) / len(terms)


STUDENT = [[0.0, 1.0, -1.0], [2.0, 0.5, 0.0], [9.0, -9.0, 3.0], [0.3, 0.2, 0.1]]
TEACHER = [[1.0, 0.0, 0.0], [0.0, 3.0, 1.0], [-5.0, 5.0, 0.0], [1.0, 1.0, 1.0]]
LABELS = [2, IGNORE, 1, 0]  # the second position is a prompt token: it must not count


@pytest.mark.parametrize("temperature, alpha", [(2.0, 0.5), (1.0, 0.0), (4.0, 1.0), (0.5, 0.3)])
def test_the_loss_is_alpha_kl_times_t_squared_plus_the_rest_cross_entropy(temperature, alpha):
    student, teacher = torch.tensor([STUDENT]), torch.tensor([TEACHER])
    labels = torch.tensor([LABELS])
    expected = hand_loss(STUDENT, TEACHER, LABELS, temperature, alpha)
    assert distillation_loss(student, teacher, labels, temperature, alpha).item() == pytest.approx(expected, rel=1e-5)
    # summed over target tokens (micro-batches add up to the step's mean): 3 of them here
    summed = distillation_loss(student, teacher, labels, temperature, alpha, reduction="sum")
    assert summed.item() == pytest.approx(3 * expected, rel=1e-5)
    # the ignored position's logits change nothing
    moved = student.clone()
    moved[0, 1] = torch.tensor([50.0, -50.0, 7.0])
    assert distillation_loss(moved, teacher, labels, temperature, alpha).item() == pytest.approx(expected, rel=1e-5)


def test_alpha_zero_is_the_plain_cross_entropy_and_a_copied_teacher_adds_nothing():
    student, labels = torch.tensor([STUDENT]), torch.tensor([LABELS])
    plain = cross_entropy(student, labels, None).item()
    assert distillation_loss(student, torch.tensor([TEACHER]), labels, 2.0, 0.0).item() == pytest.approx(plain)
    assert distillation_loss(student, student.clone(), labels, 3.0, 1.0).item() == pytest.approx(0.0, abs=1e-6)


TEACHER_MODEL = TINY_MODEL["transformer"]
STUDENT_MODEL = ["model=gru", "model.embedding_size=8", "model.hidden_size=16"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    folder = tmp_path_factory.mktemp("distill") / "teacher"
    assert run_msr("train", *TINY, *TEACHER_MODEL, f"hydra.run.dir={folder}") == 0
    return folder


def test_a_distilled_run_sets_teacher_and_student_side_by_side(teacher, in_tmp):
    args = ["train", *TINY, *STUDENT_MODEL, f"distill.teacher={teacher}", "distill.temperature=2",
            "distill.alpha=0.5"]
    assert run_msr(*args, "hydra.run.dir=student") == 0
    record = read_metrics(in_tmp / "student")
    side = record["distill"]
    assert side["teacher_run"] == str((teacher / "checkpoints/best").resolve())
    assert (side["temperature"], side["alpha"]) == (2.0, 0.5)
    teacher_record = read_metrics(teacher)
    assert side["teacher"]["parameters"] == teacher_record["parameters"]
    assert side["student"]["parameters"] == record["parameters"] < teacher_record["parameters"] / 4
    assert side["parameter_ratio"] == round(record["parameters"] / teacher_record["parameters"], 4)
    # both scored on the same test split: each model's own best checkpoint, as its run scored it
    assert side["teacher"]["test/accuracy"] == pytest.approx(teacher_record["metrics"]["test/accuracy"])
    assert side["teacher"]["test/loss"] == pytest.approx(teacher_record["metrics"]["test/loss"], rel=1e-5)
    assert side["student"]["test/accuracy"] == pytest.approx(record["metrics"]["test/accuracy"])
    assert side["teacher"]["tokens_per_second"] > 0 and side["student"]["tokens_per_second"] > 0
    # the student reads with the teacher's tokenizer
    for checkpoint in ("best", "last"):
        ours = json.loads((in_tmp / "student/checkpoints" / checkpoint / "tokenizer.json").read_text())
        assert ours == json.loads((teacher / "checkpoints/best/tokenizer.json").read_text())
    # the teacher changed the training: same seed and init, another loss than training from scratch
    assert run_msr("train", *TINY, *STUDENT_MODEL, "hydra.run.dir=scratch") == 0
    scratch = [json.loads(line) for line in (in_tmp / "scratch/history.jsonl").read_text().splitlines()]
    distilled = [json.loads(line) for line in (in_tmp / "student/history.jsonl").read_text().splitlines()]
    first = [next(h["train/loss"] for h in history if "train/loss" in h) for history in (scratch, distilled)]
    assert first[0] != pytest.approx(first[1])


def refused(capsys, *args) -> str:
    assert run_msr(*args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    return err


@pytest.mark.parametrize("override, message", [
    ("distill.temperature=0", "distill.temperature=0.0 is not allowed: must be > 0"),
    ("distill.alpha=1.5", "distill.alpha=1.5 is not allowed: must be in [0, 1]"),
    ("distill.alpha=-0.1", "distill.alpha=-0.1 is not allowed: must be in [0, 1]"),
    ("data=logic", "data='logic' is not allowed: the teacher ("),
    ("data.tokenizer=char", "data.tokenizer='char' is not allowed: the teacher ("),
    ("data.seed=7", "was trained with data.seed=1234"),
])
def test_bad_distill_settings_are_one_line_errors_before_a_run_folder(teacher, in_tmp, capsys, override, message):
    assert message in refused(capsys, "train", *TINY, *STUDENT_MODEL, f"distill.teacher={teacher}", override)
    assert not (in_tmp / "outputs").exists()


def test_bf16_is_refused_before_training_where_the_teacher_is_an_lstm_the_cpu_cannot_autocast(
        in_tmp, capsys, monkeypatch):
    """The student (a GRU) autocasts, but the LSTM teacher is scored beside it under the same
    autocast: where oneDNN has no bf16 LSTM the run stops before its first step, not after training."""
    assert run_msr("train", *TINY, *TINY_MODEL["lstm"], "trainer.max_steps=3", "hydra.run.dir=lstm") == 0
    capsys.readouterr()
    monkeypatch.setattr(msr.device, "cpu_runs_bf16_lstm", lambda: False)
    assert run_msr("train", *TINY, *STUDENT_MODEL, "distill.teacher=lstm", "trainer.precision=bf16",
                   "hydra.run.dir=student") == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "msr: error: trainer.precision=bf16: this CPU's oneDNN has no bf16 LSTM" in err
    assert not (in_tmp / "student/checkpoints").exists()


def test_a_teacher_without_checkpoints_or_of_another_command_is_refused(teacher, in_tmp, capsys):
    assert "must be an existing run folder" in refused(capsys, "train", *TINY, "distill.teacher=nowhere")
    bare = in_tmp / "bare"
    shutil.copytree(teacher, bare, ignore=shutil.ignore_patterns("checkpoints"))
    assert "has no checkpoints/best/model.safetensors" in refused(capsys, "train", *TINY, f"distill.teacher={bare}")
    err = refused(capsys, "pretrain", "data=arith", f"distill.teacher={teacher}")
    assert "distill.teacher=" in err and "is for msr train only" in err
    assert not (in_tmp / "outputs").exists()
