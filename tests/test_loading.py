"""The data layer: scratchpads, the generation cache, files in every format, templates, tokenizers,
and the one-line errors that bad files get."""

from __future__ import annotations

import json
import random
import re
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import run_msr

from msr.config import ArithConfig, ChainConfig, FilesConfig, ListOpsConfig, LogicConfig, PathsConfig, SplitConfig
from msr.data import ANSWER_MARK, load_data
from msr.data.generated import fingerprint
from msr.data.tasks import arith, chain, listops, logic
from msr.data.tokenizer import TextTokenizer
from msr.errors import ConfigError, UserError
from conftest import msr_process

SMALL = ArithConfig(train=SplitConfig(size=300), val=SplitConfig(size=30), test=SplitConfig(size=30))
ROWS = [{"question": f"q {i} {'x ' * (i % 3)}".strip(), "answer": str(i % 5), "n": i % 4 + 1} for i in range(100)]


@pytest.fixture
def paths(tmp_path):
    return PathsConfig(data=str(tmp_path), cache=str(tmp_path / "cache"))


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# --- scratchpads: the intermediate results, checked against the tasks' independent meaning ---


def test_arith_scratchpad_is_the_running_value_of_each_prefix():
    rng = random.Random(3)
    for _ in range(100):
        r = arith.sample(rng, rng.randint(1, 8), SMALL)
        words = r["input"].removesuffix("=").split()
        prefixes = [" ".join(words[: 2 * k + 1]) + " =" for k in range(1, r["steps"] + 1)]
        assert r["scratchpad"].split(" , ") == [arith.answer(p, 10) for p in prefixes]
        assert r["scratchpad"].split(" , ")[-1] == r["target"]


def test_arith_index_hints_label_each_operator_and_its_value():
    assert arith.scratchpad("7 B + 5 G * 3 H - 2 =", 10) == "B 2 , G 6 , H 4"
    assert arith.answer("7 B + 5 G * 3 H - 2 =", 10) == arith.answer("7 + 5 * 3 - 2 =", 10) == "4"
    rng, hinted = random.Random(3), replace(SMALL, index_hints=True)
    for _ in range(100):
        r = arith.sample(rng, rng.randint(1, 12), hinted)
        words = r["input"].split()
        hints = words[1:-1:3]  # operand, hint, operator, operand, hint, ...
        assert len(hints) == r["steps"] and hints == sorted(set(hints)) and all(h.isupper() for h in hints)
        assert words[2:-1:3] == [w for w in words if w in "+-*"]
        plain = " ".join(w for w in words if w not in hints)
        assert r["target"] == arith.answer(plain, 10)
        assert r["scratchpad"] == " , ".join(f"{h} {v}" for h, v in zip(hints, arith.running_values(plain, 10)))
    assert arith.count(2, hinted) == arith.count(2, SMALL) * 325  # C(26, 2) orders of letters


def test_arith_consecutive_hints_are_a_run_of_the_alphabet_from_a_random_start():
    rng, hinted = random.Random(5), replace(SMALL, index_hints=True, hint_letters="consecutive")
    starts = set()
    for _ in range(300):
        r = arith.sample(rng, rng.randint(1, 8), hinted)
        hints = arith.hints_of(r["input"])
        assert len(hints) == r["steps"]
        assert [ord(h) - ord(hints[0]) for h in hints] == list(range(r["steps"]))  # D E F G
        assert r["scratchpad"].split(" , ")[0].startswith(hints[0] + " ")
        starts.add(hints[0])
    assert len(starts) >= 20  # the run starts anywhere it fits
    assert arith.count(2, hinted) == arith.count(2, SMALL) * 25  # the run starts at A..Y


def test_arith_scratchpad_operands_copy_each_step_before_its_value(paths):
    assert arith.scratchpad("7 B + 5 G * 3 H - 2 =", 10, operands=True) == "7 , B + 5 2 , G * 3 6 , H - 2 4 , ="
    assert arith.scratchpad("7 + 5 * 3 - 2 =", 10, operands=True) == "7 , + 5 2 , * 3 6 , - 2 4 , ="
    rng = random.Random(6)
    cfg = replace(SMALL, index_hints=True, hint_letters="consecutive", scratchpad_operands=True)
    for _ in range(100):
        r = arith.sample(rng, rng.randint(1, 12), cfg)
        words, items = r["input"].removesuffix(" =").split(), r["scratchpad"].split(" , ")
        assert items[0] == words[0] and items[-1] == "=" and len(items) == r["steps"] + 2
        # hint, operator, operand as the input has them, then the running value
        assert [item.split()[:3] for item in items[1:-1]] == [words[i:i + 3] for i in range(1, len(words), 3)]
        assert [item.split()[3] for item in items[1:-1]] == arith.running_values(r["input"], 10)
        assert items[-2].split()[-1] == r["target"]
    # the model's target: the copied steps, then the answer; the setting is part of the cache key
    shown = load_data(replace(cfg, scratchpad=True), paths).splits["test"][0]
    assert re.fullmatch(rf"\d( , [A-Z] [-+*] \d \d)+ , = {ANSWER_MARK} \d", shown["target"])
    assert load_data(replace(cfg, scratchpad=True, scratchpad_operands=False), paths).splits["test"][0]["target"] \
        != shown["target"]


def test_chain_scratchpad_traces_back_then_computes_forward():
    text = "a = 3 ; b = a + 2 ; c = b * 2 ; d = 7 ; c ?"
    assert chain.scratchpad(text, 100) == "c = b * 2 , b = a + 2 , a = 3 , b = 3 + 2 = 5 , c = 5 * 2 = 10"
    assert chain.scratchpad("x = 9 ; y = x * 7 ; y ?", 10) == "y = x * 7 , x = 9 , y = 9 * 7 = 3"
    cfg = ChainConfig()
    rng = random.Random(4)
    for _ in range(100):
        r = chain.sample(rng, rng.randint(1, 6), cfg)
        items = r["scratchpad"].split(" , ")
        assert len(items) == 2 * r["steps"] + 1  # steps + 1 statements traced, steps values computed
        assert items[0].startswith(r["input"].split()[-2] + " = ")  # the trace starts at the query
        assert items[-1].endswith(f"= {r['target']}")


def test_listops_and_logic_scratchpads_end_in_the_answer():
    rng = random.Random(5)
    for _ in range(100):
        r = listops.sample(rng, rng.randint(1, 5), ListOpsConfig())
        assert r["scratchpad"].split(" , ")[-1] == r["target"]
        assert len(r["scratchpad"].split(" , ")) == r["input"].count("[")  # one value per list
        r = logic.sample(rng, rng.randint(1, 5), LogicConfig())
        last = r["scratchpad"].split(" , ")[-1]
        question = r["input"].split(" Question : ")[1].removesuffix(" ?")
        who, _, attribute = question.split()
        expected = {"True": f"{who} is {attribute}", "False": f"{who} is not {attribute}"}.get(r["target"])
        assert last == expected if expected else last != f"{who} is {attribute}"


def test_scratchpad_and_template_change_the_presentation_only(paths):
    plain = load_data(SMALL, paths).splits["test"]
    shown = load_data(replace(SMALL, scratchpad=True, template="Q: {input} A:"), paths).splits["test"]
    for a, b in zip(plain, shown):
        assert b["input"] == f"Q: {a['input']} A:"
        assert b["target"] == f"{a['scratchpad']} {ANSWER_MARK} {a['target']}"


def test_a_template_must_use_input_and_nothing_else():
    for bad in ("Question:", "{input} {answer}"):
        with pytest.raises(ConfigError, match="data.template"):
            replace(SMALL, template=bad).validate("data.")


# --- the generation cache ---


def test_generated_tasks_are_cached_by_fingerprint(paths, caplog):
    caplog.set_level("INFO", logger="msr")
    first = load_data(SMALL, paths).splits
    assert "generated and cached" in caplog.text
    caplog.clear()
    again = load_data(replace(SMALL, scratchpad=True), paths)  # presentation only: same entry
    assert "cached at" in caplog.text and "generated and cached" not in caplog.text
    assert [r["input"] for r in again.splits["train"]] == [r["input"] for r in first["train"]]
    assert fingerprint(SMALL) == fingerprint(replace(SMALL, template="Q: {input}", tokenizer="char"))
    for changed in (replace(SMALL, seed=1), replace(SMALL, modulus=7), replace(SMALL, test=SplitConfig(size=31))):
        assert fingerprint(changed) != fingerprint(SMALL)
    assert len(list(Path(paths.cache, "tasks").iterdir())) == 1  # one entry, no temporary folders


# --- files ---


def test_jsonl_folder_with_split_files_and_field_mapping(tmp_path, paths):
    for split, rows in (("train", ROWS[:80]), ("val", ROWS[80:90]), ("test", ROWS[90:])):
        write_jsonl(tmp_path / f"{split}.jsonl", rows)
    cfg = FilesConfig(path=str(tmp_path), input_field="question", target_field="answer", steps_field="n")
    data = load_data(cfg, paths)
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 80, "val": 10, "test": 10}
    assert data.splits["test"][0] == {"input": "q 90", "target": "0", "steps": 3}
    assert data.overlap == {"val/train": 0, "test/train": 0, "test/val": 0}


def test_one_file_is_carved_into_seeded_disjoint_splits(tmp_path, paths):
    file = write_jsonl(tmp_path / "all.jsonl", [{"input": f"x {i}", "target": "y"} for i in range(200)])
    cfg = FilesConfig(path=str(file), val_ratio=0.1, test_ratio=0.2)
    data = load_data(cfg, paths).splits
    assert {k: len(v) for k, v in data.items()} == {"train": 140, "val": 20, "test": 40}
    inputs = [{r["input"] for r in rows} for rows in data.values()]
    assert len(set.union(*inputs)) == 200
    assert load_data(cfg, paths).splits == data
    assert load_data(replace(cfg, seed=9), paths).splits["test"] != data["test"]
    assert "steps" not in data["train"][0]  # no steps field: steps unknown


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json", "arrow"])
def test_other_formats_read_the_same_examples(fmt, tmp_path, paths):
    from datasets import Dataset, DatasetDict

    table = Dataset.from_list(ROWS[:50])
    if fmt == "arrow":
        DatasetDict({"train": table, "test": Dataset.from_list(ROWS[50:60])}).save_to_disk(str(tmp_path / "set"))
        path = tmp_path / "set"
    elif fmt == "json":  # one JSON array
        path = tmp_path / "train.json"
        path.write_text(json.dumps(ROWS[:50]))
    else:
        path = tmp_path / f"train.{fmt}"
        getattr(table, f"to_{fmt}")(str(path))
    cfg = FilesConfig(path=str(path), format=fmt, input_field="question", target_field="answer",
                      steps_field="n", test_ratio=0.2)
    data = load_data(cfg, paths).splits
    wanted = {r["question"]: (r["answer"], r["n"]) for r in ROWS}
    for rows in data.values():
        for r in rows:
            assert wanted[r["input"]] == (r["target"], r["steps"])
    assert sum(map(len, data.values())) == (60 if fmt == "arrow" else 50)


def test_text_lines_are_cut_by_the_pattern(tmp_path, paths):
    (tmp_path / "train.txt").write_text("IN: jump twice OUT: I_JUMP I_JUMP\n\nIN: walk OUT: I_WALK\n" * 10)
    cfg = FilesConfig(path=str(tmp_path), format="text", pattern="IN: (?P<input>.*) OUT: (?P<target>.*)",
                      preprocess="scan", val_ratio=0.1, test_ratio=0.4)
    data = load_data(cfg, paths).splits
    assert sum(map(len, data.values())) == 20
    assert {(r["input"], r["target"], r["steps"]) for r in data["train"]} <= {
        ("jump twice", "I_JUMP I_JUMP", 1), ("walk", "I_WALK", 0)}


def test_a_text_corpus_keeps_its_order_and_splits_by_characters(tmp_path, paths):
    text = "".join(f"line {i}\n" for i in range(1000))
    (tmp_path / "corpus.txt").write_text(text)
    data = load_data(FilesConfig(path=str(tmp_path / "corpus.txt"), format="text", test_ratio=0.0), paths)
    assert data.corpus and set(data.splits) == {"train", "val"}
    train, val = data.splits["train"][0]["text"], data.splits["val"][0]["text"]
    assert train + val == text and len(train) == int(len(text) * 0.9)


# --- bad input: one line naming the file, the line or the field, and the fix ---


def test_a_malformed_jsonl_line_is_named_with_its_number(tmp_path, paths):
    file = tmp_path / "train.jsonl"
    file.write_text('{"input": "a", "target": "b"}\n{"input": "c", "target": "d"}\n{"input": "e" "target": 1}\n')
    with pytest.raises(UserError, match=r"train.jsonl:3: not valid JSON"):
        load_data(FilesConfig(path=str(file)), paths)


@pytest.mark.parametrize("bom", [False, True])
def test_a_bad_jsonl_line_is_reported_at_the_column_python_finds(bom, tmp_path, paths):
    bad = '{"input": "a", "target": "b", "steps": 1, "x": tru}'
    file = tmp_path / "train.jsonl"
    # a byte-order mark is fine for `datasets`, so it must not be what the message blames
    file.write_bytes(("\ufeff" if bom else "").encode() + f'{{"input": "c", "target": "d"}}\n{bad}\n'.encode())
    with pytest.raises(json.JSONDecodeError) as python:
        json.loads(bad)
    with pytest.raises(UserError, match=rf"train.jsonl:2: not valid JSON \(Expecting value at column "
                                        rf"{python.value.colno}\)"):
        load_data(FilesConfig(path=str(file)), paths)


def test_a_bad_line_in_a_json_file_is_named_too(tmp_path, paths):
    file = tmp_path / "train.json"
    file.write_text('[\n{"input": "c", "target": "d"},\n{"input": "a", "target": "b", "steps": 1, "x": tru}\n]\n')
    with pytest.raises(UserError, match=r"train.json:3: not valid JSON \(Expecting value at column 48\)"):
        load_data(FilesConfig(path=str(file), format="json"), paths)


def test_a_carved_split_that_would_be_empty_is_refused_with_the_ratio_to_raise(tmp_path, paths):
    file = write_jsonl(tmp_path / "tiny.jsonl", [{"input": f"x {i}", "target": "y"} for i in range(4)])
    with pytest.raises(UserError, match=r"^data.val_ratio=0.1 carves 0 of the 4 rows into val; raise "
                                        r"data.val_ratio to at least 0.13 or give a val file \(data.val_file=\)$"):
        load_data(FilesConfig(path=str(file)), paths)
    with pytest.raises(UserError, match=r"^data.test_ratio=0.1 carves 0 of the 4 rows into test; raise "
                                        r"data.test_ratio to at least 0.13"):
        load_data(FilesConfig(path=str(file), val_ratio=0.13), paths)
    data = load_data(FilesConfig(path=str(file), val_ratio=0.13, test_ratio=0.13), paths).splits
    assert {k: len(v) for k, v in data.items()} == {"train": 2, "val": 1, "test": 1}
    with pytest.raises(UserError, match=r"^data.path=.*two.jsonl: 2 rows are too few to carve val and test from; "
                                        r"give val its own file"):
        load_data(FilesConfig(path=str(write_jsonl(tmp_path / "two.jsonl", [{"input": "a", "target": "b"}] * 2))),
                  paths)


def test_a_corpus_split_that_would_be_empty_is_refused_with_the_ratio_to_raise(tmp_path, paths):
    (tmp_path / "corpus.txt").write_text("abcdefgh\n")  # 9 characters: val's tenth is the newline
    with pytest.raises(UserError, match=r"^data.val_ratio=0.1 cuts 1 of the corpus's 9 characters into val, and no "
                                        r"text; raise data.val_ratio to at least 0.12 or give a val file"):
        load_data(FilesConfig(path=str(tmp_path / "corpus.txt"), format="text", test_ratio=0.0), paths)
    data = load_data(FilesConfig(path=str(tmp_path / "corpus.txt"), format="text", val_ratio=0.12, test_ratio=0.0),
                     paths).splits
    assert data["val"][0]["text"] == "h\n" and set(data) == {"train", "val"}


def test_a_missing_field_lists_the_fields_present(tmp_path, paths):
    file = write_jsonl(tmp_path / "train.jsonl", ROWS)
    with pytest.raises(UserError, match=r"no field 'input' \(data.input_field\); fields present: question, answer, n"):
        load_data(FilesConfig(path=str(file)), paths)
    with pytest.raises(UserError, match=r"no field 'depth' \(data.steps_field\)"):
        load_data(FilesConfig(path=str(file), input_field="question", target_field="answer", steps_field="depth"),
                  paths)


def test_missing_paths_empty_files_and_unmatched_lines_are_clear_errors(tmp_path, paths):
    with pytest.raises(UserError, match="does not exist"):
        load_data(FilesConfig(path=str(tmp_path / "nowhere")), paths)
    (tmp_path / "train.jsonl").write_text("")
    with pytest.raises(UserError, match="is empty"):
        load_data(FilesConfig(path=str(tmp_path)), paths)
    with pytest.raises(UserError, match="data.test_file: .*missing.jsonl does not exist"):
        load_data(FilesConfig(path=str(tmp_path), test_file="missing.jsonl"), paths)
    (tmp_path / "lines.txt").write_text("IN: a OUT: b\nsomething else\n")
    with pytest.raises(UserError, match=r"lines.txt:2: line does not match data.pattern"):
        load_data(FilesConfig(path=str(tmp_path / "lines.txt"), format="text", pattern="IN: (?P<input>.*) OUT: (?P<target>.*)"),
                  paths)


def test_scratchpad_on_data_without_one_is_refused(tmp_path, paths):
    file = write_jsonl(tmp_path / "train.jsonl", [{"input": "a", "target": "b"}] * 20)
    with pytest.raises(UserError, match="data.scratchpad=true, but data files has no scratchpad"):
        load_data(FilesConfig(path=str(file), scratchpad=True), paths)


def test_hub_offline_says_how_to_use_local_files(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")  # read when datasets is imported: a fresh process
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = msr_process("data", "data=files", "data.hub=nobody/nothing", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert re.search(r"msr: error: data.hub=nobody/nothing: cannot load it .*data.path=", result.stderr)
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").rglob("data/*.jsonl"))


def test_path_and_hub_are_exclusive_and_patterns_need_both_groups():
    with pytest.raises(ConfigError, match="set exactly one of data.path"):
        FilesConfig().validate("data.")
    with pytest.raises(ConfigError, match=r"\(\?P<input>"):
        FilesConfig(path="x", format="text", pattern="IN: (.*) OUT: (?P<target>.*)").validate("data.")


# --- tokenizers ---


def test_char_tokenizer_round_trips_text_with_spaces_and_newlines():
    text = "First Citizen:\nBefore we proceed, hear me.\n"
    tokenizer = TextTokenizer.build([text], "char")
    ids = tokenizer.encode_batch([text])[0]
    assert len(ids) == len(text) and tokenizer.decode(ids) == text
    assert tokenizer.vocab_size == 4 + len(set(text))
    assert tokenizer.encode_batch(["Z"])[0] == [tokenizer.unk_id]


def test_bpe_tokenizer_has_no_unknowns_and_round_trips():
    corpus = [f"Natalia sold {i} clips in April and {2 * i} in May." for i in range(200)]
    tokenizer = TextTokenizer.build(corpus, "bpe", vocab_size=400)
    text = "Zoë sold 48/2 = <<48/2=24>>24 clips."
    ids = tokenizer.encode_batch([text])[0]
    assert tokenizer.decode(ids) == text and tokenizer.unk_id not in ids
    assert len(tokenizer.encode_batch([corpus[0]])[0]) < len(corpus[0]) / 2  # merges were learned


def test_word_tokenizer_encodes_repeated_texts_once_and_alike():
    tokenizer = TextTokenizer.build(["a b c"])
    assert tokenizer.encode_batch(["a b", "c", "a b"]) == [[4, 5], [6], [4, 5]]


def test_a_steps_value_that_is_not_a_number_is_named(tmp_path, paths):
    rows = [{"input": f"x {i}", "target": "y", "steps": 2} for i in range(10)] + [{"input": "z", "target": "y", "steps": "two"}]
    file = write_jsonl(tmp_path / "train.jsonl", rows)
    with pytest.raises(UserError, match=r"example \d+: steps='two' is not a whole number of steps"):
        load_data(FilesConfig(path=str(file), val_ratio=0.0, test_ratio=0.0), paths)


def test_a_data_path_one_folder_too_high_names_the_folder_that_holds_the_file(in_tmp, capsys):
    (in_tmp / "data/scan").mkdir(parents=True)
    (in_tmp / "data/scan/tasks_train_simple.txt").write_text("IN: walk OUT: I_WALK\n")
    assert run_msr("data", "data=scan_simple", "data.path=data") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.endswith("does not exist; it is in data/scan: set data.path=data/scan")
