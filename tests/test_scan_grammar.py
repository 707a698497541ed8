"""SCAN's structured targets (data.preprocess=scan_structured): the marks against hand-written
targets, the actions against every line of the real benchmark, and the refusals."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import run_msr

from msr.config import FilesConfig, PathsConfig, ScanConfig
from msr.data import load_data
from msr.data.scan_grammar import actions_of, structured_target
from msr.errors import UserError

SCAN = Path(__file__).resolve().parents[2] / "shared" / "data" / "scan"
LINE = re.compile(ScanConfig.pattern)  # the line format data=scan_* reads

L, R, J, W = "I_TURN_LEFT", "I_TURN_RIGHT", "I_JUMP", "I_WALK"


@pytest.mark.parametrize("command, target", [
    ("walk", W),
    ("turn left", L),
    ("jump right", f"{R} {J}"),
    ("jump opposite left", f"{L} {L} {J}"),
    ("turn opposite right", f"{R} {R}"),
    ("turn around right", f"{R} .3 {R} .2 {R} .1 {R} .0"),
    ("jump around left", f"{L} {J} .3 {L} {J} .2 {L} {J} .1 {L} {J} .0"),
    ("walk thrice", f"{W} |2 {W} |1 {W} |0"),
    ("jump opposite left twice", f"{L} {L} {J} |1 {L} {L} {J} |0"),
    ("jump and walk left", f"{J} ; {L} {W}"),
    ("jump after walk left twice", f"{L} {W} |1 {L} {W} |0 ; {J}"),  # "x after y": y first
    ("jump around left twice and walk",
     f"{L} {J} .3 {L} {J} .2 {L} {J} .1 {L} {J} .0 |1 {L} {J} .3 {L} {J} .2 {L} {J} .1 {L} {J} .0 |0 ; {W}"),
])
def test_marks_count_down_the_turns_and_repetitions_and_end_the_first_half(command, target):
    assert structured_target(command) == target


def test_the_actions_alone_are_scans_target():
    # 3 x (4 x "turn, jump") then 2 x walk: 26 actions, longer than any the length split trains on
    target = structured_target("walk twice after jump around left thrice")
    assert actions_of(target) == " ".join([L, J] * 12 + [W, W])
    words = target.split()
    assert [w for w in words if w.startswith("|")] == ["|2", "|1", "|0", "|1", "|0"]
    assert [w for w in words if w.startswith(".")] == [".3", ".2", ".1", ".0"] * 3 and words.count(";") == 1


@pytest.mark.skipif(not SCAN.is_dir(), reason="needs SCAN in ../shared/data/scan")
def test_every_line_of_the_benchmark_keeps_its_actions():
    lines = [LINE.match(line.strip()).groups() for file in sorted(SCAN.glob("tasks_*.txt"))
             for line in file.read_text().splitlines() if line.strip()]
    assert len(lines) > 60_000
    assert all(actions_of(structured_target(command)) == actions for command, actions in lines)


@pytest.fixture
def scan_file(tmp_path):
    def write(lines: str) -> FilesConfig:
        (tmp_path / "train.txt").write_text(lines * 10)
        return FilesConfig(path=str(tmp_path), format="text", pattern=ScanConfig.pattern,
                           preprocess="scan_structured", val_ratio=0.1, test_ratio=0.4)
    return write


def test_the_loaded_targets_are_structured_and_keep_their_steps(scan_file, tmp_path):
    cfg = scan_file("IN: jump twice OUT: I_JUMP I_JUMP\nIN: walk and turn left OUT: I_WALK I_TURN_LEFT\n")
    data = load_data(cfg, PathsConfig(data=str(tmp_path), cache=str(tmp_path / "cache"))).splits
    assert {(r["input"], r["target"], r["steps"]) for r in data["train"]} == {
        ("jump twice", "I_JUMP |1 I_JUMP |0", 1), ("walk and turn left", "I_WALK ; I_TURN_LEFT", 1)}


@pytest.mark.parametrize("lines, wrong", [
    ("IN: jump twice OUT: I_JUMP\n", "the target of 'jump twice' is not what SCAN's grammar makes of it"),
    ("IN: hop twice OUT: I_HOP I_HOP\n", "'hop twice' is not a SCAN command"),
    ("IN: turn OUT: I_TURN\n", "'turn' is not a SCAN command"),
])
def test_a_file_that_is_not_scan_is_refused_in_one_line(scan_file, tmp_path, lines, wrong):
    with pytest.raises(UserError, match=re.escape(wrong) + ".*use data.preprocess=scan"):
        load_data(scan_file(lines), PathsConfig(data=str(tmp_path), cache=str(tmp_path / "cache")))


def test_the_command_line_refusal_exits_2(in_tmp, capsys):
    (in_tmp / "scan").mkdir()
    (in_tmp / "scan/tasks_train_simple.txt").write_text("IN: walk OUT: I_RUN\n" * 20)
    (in_tmp / "scan/tasks_test_simple.txt").write_text("IN: walk OUT: I_WALK\n" * 5)
    assert run_msr("data", "data=scan_simple", "paths.data=.", "data.preprocess=scan_structured") == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(
        "msr: error: data.preprocess=scan_structured: the target of 'walk'")


def test_the_scan_length_preset_trains_and_scores_on_structured_targets(in_tmp):
    (in_tmp / "scan").mkdir()
    commands = ["jump twice", "walk left thrice", "look around right", "run and jump", "turn left after walk"]
    actions = {"jump twice": "I_JUMP I_JUMP", "walk left thrice": "I_TURN_LEFT I_WALK " * 3,
               "look around right": "I_TURN_RIGHT I_LOOK " * 4, "run and jump": "I_RUN I_JUMP",
               "turn left after walk": "I_WALK I_TURN_LEFT"}
    lines = "".join(f"IN: {c} OUT: {actions[c].strip()}\n" for c in commands)
    (in_tmp / "scan/tasks_train_length.txt").write_text(lines * 8)
    (in_tmp / "scan/tasks_test_length.txt").write_text(lines)
    assert run_msr("train", "+experiment=scan_length", "paths.data=.", "trainer.max_steps=4",
                   "scheduler.warmup_steps=1", "trainer.eval_every=2", "hydra.run.dir=run") == 0
    rows = [json.loads(line) for line in (in_tmp / "run/predictions.jsonl").read_text().splitlines()]
    assert {r["input"]: r["target"] for r in rows} == {c: structured_target(c) for c in commands}
    vocabulary = json.loads((in_tmp / "run/checkpoints/best/tokenizer.json").read_text())["model"]["vocab"]
    assert {"|2", "|1", "|0", ".3", ".0", ";"} <= set(vocabulary)
