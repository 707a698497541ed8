"""`msr augment`: the folder it writes, labels checked by the task's solver, provenance, no
held-out inputs, pseudo-labels and adversarial edits from a teacher, and clear errors."""

from __future__ import annotations

import json

import pytest
from conftest import read_metrics, run_msr

from msr.data.tasks import arith, chain

SMALL = ["data.train.size=300", "data.val.size=40", "data.test.size=40"]


def rows(folder, split="train"):
    return [json.loads(line) for line in (folder / "data" / f"{split}.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A small arith run, right on about a quarter of the inputs: enough to label some and be fooled on some."""
    folder = tmp_path_factory.mktemp("teacher")
    assert run_msr("train", "data.train.size=2000", "data.val.size=100", "data.test.size=100", "trainer.max_steps=300",
                   "trainer.eval_every=100", "model.embedding_size=32", "model.hidden_size=64",
                   f"hydra.run.dir={folder}/run") == 0
    return folder / "run"


def test_augmenting_arith_writes_correct_labelled_examples_with_provenance(in_tmp):
    assert run_msr("augment", *SMALL, "augment.copies=3", "hydra.run.dir=aug") == 0
    train, test, val = rows(in_tmp / "aug"), rows(in_tmp / "aug", "test"), rows(in_tmp / "aug", "val")
    originals = [r for r in train if r["operation"] == "original"]
    new = [r for r in train if r["operation"] != "original"]
    assert len(originals) == 300 and [r["source"] for r in originals] == list(range(300))
    assert {r["operation"] for r in new} == {"swap_operands", "perturb_numbers"}
    for r in new:  # each label is the task's own answer; a label-preserving edit kept its source's
        assert r["target"] == arith.answer(r["input"], 10)
        assert r["scratchpad"] == " , ".join(arith.running_values(r["input"], 10))
        if r["operation"] == "swap_operands":
            assert r["target"] == originals[r["source"]]["target"] and r["steps"] == originals[r["source"]]["steps"]
    new_inputs = [r["input"] for r in new]  # each new, never a copy of another example
    assert len(set(new_inputs)) == len(new_inputs) and not set(new_inputs) & {r["input"] for r in originals}
    assert not {r["input"] for r in new} & {r["input"] for r in test + val}  # never a held-out input

    record = read_metrics(in_tmp / "aug")["augment"]
    kept = sum(c.get("kept", 0) for c in record["operations"].values())
    assert kept == len(new) and record["examples"] == len(train)
    assert sum(c["tried"] for c in record["operations"].values()) == 900

    # the Arrow copy holds the same rows, and the folder trains as data=files
    from datasets import load_from_disk

    assert load_from_disk(str(in_tmp / "aug/data"))["train"].to_list() == train
    assert run_msr("data", "data=files", "data.path=aug/data", "hydra.run.dir=summary") == 0
    assert read_metrics(in_tmp / "summary")["data"]["splits"]["train"]["examples"] == len(train)


def test_the_same_seed_writes_the_same_examples(in_tmp):
    args = ["data=chain", *SMALL, "augment.ops=[rename_entities,reorder_facts:2,insert_distractor,perturb_numbers]"]
    assert run_msr("augment", *args, "hydra.run.dir=a") == 0
    assert run_msr("augment", *args, "hydra.run.dir=b") == 0
    assert (in_tmp / "a/data/train.jsonl").read_text() == (in_tmp / "b/data/train.jsonl").read_text()
    for r in rows(in_tmp / "a"):
        assert r["target"] == chain.answer(r["input"], 100)


def test_text_operations_rewrite_free_text_and_keep_targets(in_tmp):
    (in_tmp / "qa.jsonl").write_text("".join(json.dumps({"input": f"what is the colour of box {i} today",
                                                         "target": f"red{i % 3}"}) + "\n" for i in range(60)))
    assert run_msr("augment", "data=files", "data.path=qa.jsonl", "augment.copies=2", "hydra.run.dir=aug",
                   "augment.ops=[random_deletion,random_swap,word_replacement,random_insertion:2]") == 0
    train = rows(in_tmp / "aug")
    by_source = {r["source"]: r for r in train if r["operation"] == "original"}
    new = [r for r in train if r["operation"] != "original"]
    assert {r["operation"] for r in new} <= {"random_deletion", "random_swap", "word_replacement", "random_insertion"}
    assert new and all(r["target"] == by_source[r["source"]]["target"] for r in new)


def test_pseudo_labels_and_adversarial_edits_from_a_teacher(teacher, in_tmp):
    assert run_msr("augment", *SMALL, "augment.copies=0", f"augment.teacher={teacher}", "augment.pseudo_labels=80",
                   "augment.confidence=0.0", "augment.adversarial=4", "hydra.run.dir=aug") == 0
    train = rows(in_tmp / "aug")
    pseudo = [r for r in train if r["operation"] == "pseudo_label"]
    record = read_metrics(in_tmp / "aug")["augment"]
    assert len(pseudo) == record["operations"]["pseudo_label"]["kept"] > 0
    assert all(0 <= r["confidence"] <= 1 and r["source"] is None for r in pseudo)
    assert record["pseudo_labels"]["right"] == sum(r["target"] == arith.answer(r["input"], 10) for r in pseudo)

    adversarial = [r for r in train if r["operation"] == "adversarial"]
    assert record["adversarial"]["flipped"] >= len(adversarial) > 0
    originals = {r["source"]: r for r in train if r["operation"] == "original"}
    for r in adversarial:  # a label-preserving edit the teacher now gets wrong
        assert r["target"] == originals[r["source"]]["target"] == arith.answer(r["input"], 10)
        assert r["teacher_answer"] != r["target"] and r["edits"]


def test_a_confidence_threshold_keeps_only_sure_labels(teacher, in_tmp):
    assert run_msr("augment", *SMALL, "augment.copies=0", f"augment.teacher={teacher}", "augment.pseudo_labels=50",
                   "augment.confidence=0.999999", "hydra.run.dir=aug") == 0
    record = read_metrics(in_tmp / "aug")["augment"]
    assert record["pseudo_labels"]["confident"] < 50
    assert all(r["confidence"] >= 0.999999 for r in rows(in_tmp / "aug") if r["operation"] == "pseudo_label")


def test_a_teacher_from_another_task_is_a_clear_error(teacher, in_tmp, capsys):
    assert run_msr("augment", "data=chain", *SMALL, f"augment.teacher={teacher}", "augment.pseudo_labels=5",
                   "hydra.run.dir=aug") == 2
    err = capsys.readouterr().err
    assert "was trained on data=arith, not data=chain" in err and "Traceback" not in err
    assert not (in_tmp / "aug/data").exists()


def test_a_teacher_of_other_task_settings_is_refused_naming_the_setting(teacher, in_tmp, capsys):
    assert run_msr("augment", *SMALL, "data.modulus=7", f"augment.teacher={teacher}", "augment.pseudo_labels=5",
                   "hydra.run.dir=aug") == 2
    err = capsys.readouterr().err
    assert "was trained with data.modulus=10, not data.modulus=7" in err and "Traceback" not in err
    assert not (in_tmp / "aug/data").exists()
    # the data's own seed, split sizes and step ranges keep the labelling rule
    assert run_msr("augment", "data.seed=5", "data.train.size=100", "data.train.max_steps=6", *SMALL[1:],
                   "augment.copies=0", f"augment.teacher={teacher}", "augment.pseudo_labels=5",
                   "augment.confidence=0", "hydra.run.dir=other") == 0
    assert read_metrics(in_tmp / "other")["augment"]["pseudo_labels"]["confident"] == 5


STUDENT = ["trainer.max_steps=10", "trainer.eval_every=10", "scheduler.warmup_steps=2", "trainer.batch_size=16",
           "model.embedding_size=16", "model.hidden_size=32"]


def test_a_teacher_trained_on_augmented_files_labels_their_task(in_tmp, capsys):
    """Iterated self-training: msr augment's folder records the task it came from."""
    assert run_msr("augment", *SMALL, "hydra.run.dir=aug") == 0
    recorded = json.loads((in_tmp / "aug/data/task.json").read_text())["data"]
    assert recorded["name"] == "arith" and recorded["modulus"] == 10
    assert run_msr("train", "data=files", "data.path=aug/data", *STUDENT, "hydra.run.dir=student") == 0
    assert run_msr("augment", *SMALL, "augment.copies=0", "augment.teacher=student", "augment.pseudo_labels=5",
                   "augment.confidence=0", "hydra.run.dir=again") == 0
    assert read_metrics(in_tmp / "again")["augment"]["pseudo_labels"]["confident"] == 5
    assert json.loads((in_tmp / "again/data/task.json").read_text())["data"] == recorded

    assert run_msr("augment", *SMALL, "data.modulus=7", "augment.teacher=student", "augment.pseudo_labels=5",
                   "hydra.run.dir=bad") == 2
    assert "was trained with data.modulus=10, not data.modulus=7" in capsys.readouterr().err

    # a folder written before task.json existed: its run's .hydra/config.yaml still says
    (in_tmp / "aug/data/task.json").unlink()
    assert run_msr("augment", *SMALL, "augment.copies=0", "augment.teacher=student", "augment.pseudo_labels=5",
                   "hydra.run.dir=old") == 0

    # files that no msr augment run vouches for say nothing of the rule that labelled them
    (in_tmp / "aug/.hydra/config.yaml").unlink()
    assert run_msr("augment", *SMALL, "augment.teacher=student", "augment.pseudo_labels=5",
                   "hydra.run.dir=unknown") == 2
    err = capsys.readouterr().err
    assert "was trained on data=files" in err and "task.json" in err and "Traceback" not in err


def test_an_augmented_split_that_would_be_empty_is_refused_before_writing(teacher, in_tmp, capsys):
    # nothing that sure: no pseudo-label is kept, and no original
    assert run_msr("augment", *SMALL, "augment.copies=0", "augment.keep_original=false",
                   f"augment.teacher={teacher}", "augment.pseudo_labels=5", "augment.confidence=1",
                   "hydra.run.dir=aug") == 2
    err = capsys.readouterr().err
    assert "the augmented train split would be empty" in err and "below confidence" in err
    assert not (in_tmp / "aug/data").exists()


@pytest.mark.parametrize("args, message", [
    (["augment.copies=0", "augment.keep_original=false"], "augment.copies=0 is not allowed: with "
                                                         "augment.keep_original=false"),
    (["augment.ops=[reorder_facts]"], "reorder_facts does not apply to data=arith; for data=arith choose from"),
    (["augment.ops=[random_swap]"], "random_swap does not apply to data=arith"),
    (["augment.ops=[swap_operands:0]"], "each NAME or NAME:WEIGHT with a weight > 0"),
    (["augment.pseudo_labels=5"], "need a trained run: augment.teacher=RUN"),
    (["data.scratchpad=true"], "set them when training on its output"),
    (["data=scan_simple", "augment.teacher=.", "augment.adversarial=3"], "and data=scan_simple has none"),
    (["data=scan_simple", "augment.teacher=.", "augment.pseudo_labels=3"], "data=scan_simple is not one"),
    (["data=scan_simple", "augment.ops=[swap_operands]"], "swap_operands does not apply to data=scan_simple"),
    (["data=scan_simple"], "name the text operations for data=scan_simple"),
])
def test_bad_augment_settings_are_refused_before_a_run_folder(in_tmp, capsys, args, message):
    assert run_msr("augment", *args) == 2
    assert message in capsys.readouterr().err
    assert not (in_tmp / "outputs").exists()


def test_a_language_model_as_teacher_is_a_clear_error(in_tmp, capsys):
    from dataclasses import asdict

    from msr.config import TransformerConfig
    from msr.data.tokenizer import TextTokenizer
    from msr.models import build_model
    from msr.train.checkpoint import save_checkpoint

    cfg = TransformerConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, max_len=32)
    tokenizer = TextTokenizer.build(["1 + 2 ="], "word")
    save_checkpoint(in_tmp / "lm/checkpoints/best", build_model(cfg, tokenizer.vocab_size), tokenizer,
                    {"model": asdict(cfg), "vocab_size": tokenizer.vocab_size, "task": "arith", "objective": "lm",
                     "config": {"data": {"template": "{input}"}}})
    assert run_msr("augment", *SMALL, "augment.teacher=lm", "augment.pseudo_labels=5", "hydra.run.dir=aug") == 2
    assert "is a language model (msr pretrain)" in capsys.readouterr().err


def test_training_with_a_scratchpad_on_rows_without_one_is_a_clear_error(in_tmp, capsys):
    rows = [{"input": f"{i} + 1 =", "target": str(i + 1), "scratchpad": None if i % 2 else str(i + 1)}
            for i in range(40)]
    (in_tmp / "mixed.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert run_msr("data", "data=files", "data.path=mixed.jsonl", "data.scratchpad=true",
                   "data.scratchpad_field=scratchpad", "hydra.run.dir=d") == 2
    assert "examples of data files have none" in capsys.readouterr().err
