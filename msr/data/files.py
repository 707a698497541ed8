"""Examples from files (jsonl, json, csv, parquet, text, arrow) or the hub, read with `datasets`.

`datasets` caches what it parses (keyed by the files' contents), so a second run reads Arrow.
Fields are mapped onto input/target/steps/scratchpad by `data.*_field`; splits come from
explicit files, `<split>.<format>` files in a folder, or are carved from train by ratio.
Every mistake in the files becomes one line that names the file (and line) and the fix.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from msr.data.preprocess import PREPROCESS
from msr.errors import UserError

log = logging.getLogger("msr")

BUILDERS = {"jsonl": "json", "json": "json", "csv": "csv", "parquet": "parquet", "text": "text"}
EXTENSIONS = {"jsonl": "jsonl", "json": "json", "csv": "csv", "parquet": "parquet", "text": "txt"}
SPLIT_NAMES = {"train": "train", "val": "val", "validation": "val", "dev": "val", "test": "test"}


def load_files(cfg, cache_root: Path) -> dict[str, list[dict]]:
    """Raw examples per split, fields mapped; val and test carved from train where missing."""
    tables = load_hub(cfg, cache_root) if cfg.hub else load_local(cfg, cache_root)
    if cfg.is_corpus:
        return split_corpus(tables, cfg)
    data = {split: to_records(table, cfg, source) for split, (table, source) in tables.items()}
    if cfg.preprocess != "none":
        data = {split: [PREPROCESS[cfg.preprocess](r) for r in rows] for split, rows in data.items()}
    return carve(data, cfg)


def load_local(cfg, cache_root: Path) -> dict:
    from datasets import DatasetDict, load_dataset, load_from_disk

    root = Path(cfg.path).expanduser()
    if not root.exists():
        raise UserError(f"data.path={cfg.path} does not exist; point it at a file or a folder of split files "
                        f"(the ready data configs read under paths.data, set by MSR_DATA)")
    if cfg.format == "arrow":
        try:
            loaded = load_from_disk(str(root))
        except FileNotFoundError:
            raise UserError(f"data.path={cfg.path} is not a folder written by datasets' save_to_disk "
                            f"(data.format=arrow); pick the files' format with data.format=") from None
        named = loaded if isinstance(loaded, DatasetDict) else {"train": loaded}
        return {SPLIT_NAMES.get(k, k): (v, f"{root}[{k}]") for k, v in named.items()}
    files = split_files(cfg, root)
    tables = {}
    for split, file in files.items():
        kwargs = {"sample_by": "document"} if cfg.is_corpus else {}
        try:
            table = load_dataset(BUILDERS[cfg.format], data_files=str(file), split="train",
                                 cache_dir=str(Path(cache_root).expanduser() / "datasets"), **kwargs)
        except Exception as err:
            raise UserError(diagnose(file, cfg.format, err)) from None
        if cfg.pattern:
            table = parse_lines(table, cfg.pattern, file)
        tables[split] = (table, str(file))
    return tables


def split_files(cfg, root: Path) -> dict[str, Path]:
    if root.is_file():
        named = {"train": root}
        folder = root.parent
    else:
        ext = EXTENSIONS[cfg.format]
        named = {split: root / f"{split}.{ext}" for split in ("train", "val", "test")
                 if (root / f"{split}.{ext}").is_file()}
        folder = root
    for split in ("train", "val", "test"):
        given = getattr(cfg, f"{split}_file")
        if given:
            named[split] = folder / given
    if "train" not in named:
        raise UserError(f"data.path={cfg.path}: no training file; expected train.{EXTENSIONS[cfg.format]} "
                        f"there, or name it with data.train_file=")
    for split, file in named.items():
        if not file.is_file():
            below = sorted(folder.glob(f"*/{file.name}"))  # data.path one level too high, e.g. at shared/data
            hint = f"; it is in {below[0].parent}: set data.path={below[0].parent}" if below else ""
            raise UserError(f"data.{split}_file: {file} does not exist{hint}")
    return named


def diagnose(file: Path, fmt, err: Exception) -> str:
    """Why `datasets` could not read a file, as one line; for JSON, the first bad line and its column."""
    fmt = getattr(fmt, "value", fmt)  # a str Enum formats as FileFormat.json
    if file.stat().st_size == 0:
        return f"{file} is empty; an empty split cannot be used"
    if fmt in ("jsonl", "json"):
        # as `datasets` reads it: a byte-order mark is skipped, and only \n ends a line (a lone \r
        # is JSON whitespace), so line numbers and columns are those of the file
        text = file.read_bytes().decode("utf-8-sig", errors="replace")
        bad_line = first_bad_json(text, whole=fmt == "json" and text.lstrip().startswith("["))
        if bad_line:
            return f"{file}:{bad_line}"
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return f"cannot read {file} as {fmt} ({first}); check data.format"


def first_bad_json(text: str, whole: bool) -> str | None:
    """The first fault as "LINE: what is wrong", with the column Python's json reports; None if
    every line (or, `whole`, the one document) parses."""
    def invalid(bad: json.JSONDecodeError, number: int) -> str:
        return f"{number}: not valid JSON ({bad.msg} at column {bad.colno}); fix or remove that line"

    if whole:
        try:
            json.loads(text)
        except json.JSONDecodeError as bad:
            return invalid(bad, bad.lineno)
        return None
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as bad:
            return invalid(bad, number)
        if not isinstance(value, dict):
            return f"{number}: each line must be a JSON object, not {type(value).__name__}"
    return None


def parse_lines(table, pattern: str, file: Path):
    """One example per non-blank line of text, cut by `pattern`'s named groups."""
    from datasets import Dataset

    regex = re.compile(pattern)
    rows = {name: [] for name in regex.groupindex}
    for number, line in enumerate(table["text"], 1):
        if not line.strip():
            continue
        match = regex.fullmatch(line.strip())
        if match is None:
            raise UserError(f"{file}:{number}: line does not match data.pattern={pattern!r}: {line[:80]!r}")
        for name, value in match.groupdict().items():
            rows[name].append(value)
    return Dataset.from_dict(rows)


def load_hub(cfg, cache_root: Path) -> dict:
    from datasets import load_dataset

    try:
        loaded = load_dataset(cfg.hub, cfg.hub_config or None, cache_dir=str(Path(cache_root).expanduser() / "datasets"))
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"data.hub={cfg.hub}: cannot load it from the Hugging Face hub ({first}); without "
                        f"network, get the files elsewhere and read them with data.path=FOLDER data.format=jsonl|csv|...") from None
    return {SPLIT_NAMES[k]: (v, f"{cfg.hub}[{k}]") for k, v in loaded.items() if k in SPLIT_NAMES}


def to_records(table, cfg, source: str) -> list[dict]:
    """Rows as {input, target[, steps][, scratchpad]} dicts; a named field that is missing is an error."""
    present = table.column_names
    fields = {"input": cfg.input_field, "target": cfg.target_field}
    optional = {"steps": (cfg.steps_field, "steps"), "scratchpad": (cfg.scratchpad_field, "scratchpad")}
    for key, (name, default) in optional.items():
        if name and (name in present or name != default):  # an unset default that is absent: unknown
            fields[key] = name
    for key, name in fields.items():
        if name not in present:
            raise UserError(f"{source}: no field {name!r} (data.{key}_field); fields present: {', '.join(present)}")
    columns = {key: table[name] for key, name in fields.items()}
    records = [dict(zip(columns, values)) for values in zip(*columns.values())]
    for number, r in enumerate(records, 1):
        r["input"], r["target"] = str(r["input"]), str(r["target"])
        if "steps" in r:
            try:
                r["steps"] = int(r["steps"])
            except (TypeError, ValueError):
                raise UserError(f"{source}: example {number}: {fields['steps']}={r['steps']!r} is not a "
                                f"whole number of steps") from None
    if not records:
        raise UserError(f"{source}: no examples; the split is empty")
    return records


def carve(data: dict[str, list[dict]], cfg) -> dict[str, list[dict]]:
    """Val and test taken from a seeded shuffle of train where no file gives them."""
    import random

    # under data.folds a fold of train is the val split (msr/data/folds.py): none is carved
    missing = [split for split in ("val", "test") if split not in data and not (split == "val" and cfg.folds)]
    if not missing:
        return data
    total = len(data["train"])
    for split in missing:  # every command needs every split: an empty one is refused here, for all alike
        ratio = getattr(cfg, f"{split}_ratio")
        if round(total * ratio) == 0:
            raise UserError(empty_carve(cfg, split, ratio, f"carves 0 of the {total} rows into {split}",
                                        lambda r: round(total * r) >= 1 and total - round(total * r) >= len(missing),
                                        f"{total} rows are too few to carve {' and '.join(missing)} from"))
    train = list(data["train"])
    random.Random(cfg.seed).shuffle(train)
    for split in missing:
        count = round(total * getattr(cfg, f"{split}_ratio"))
        data[split], train = train[:count], train[count:]
    if not train:
        raise UserError("data: nothing left for training after carving val/test; lower data.val_ratio/test_ratio")
    data["train"] = train
    return {split: data[split] for split in ("train", "val", "test") if split in data}


def split_corpus(tables: dict, cfg) -> dict[str, list[dict]]:
    """A corpus keeps its order: the first (1 - val - test) of its characters train, then val, then test."""
    texts = {split: "\n".join(table["text"]) for split, (table, _) in tables.items()}
    if set(texts) == {"train"}:
        text = texts.pop("train")
        n = len(text)

        def cut(val: float, test: float) -> dict[str, str]:
            cuts = [0, int(n * (1 - val - test)), int(n * (1 - test)), n]  # as nanoGPT
            return {split: text[a:b] for split, a, b in zip(("train", "val", "test"), cuts, cuts[1:])}

        texts = cut(cfg.val_ratio, cfg.test_ratio)
        for split in ("val", "test"):  # a ratio of 0 asks for no such split; any other, for some text
            ratio = getattr(cfg, f"{split}_ratio")
            if ratio and not texts[split].strip():
                def has_text(r: float, split=split) -> bool:
                    ratios = {"val": cfg.val_ratio, "test": cfg.test_ratio, split: r}
                    return all(t.strip() for s, t in cut(ratios["val"], ratios["test"]).items() if ratios.get(s, 1))
                raise UserError(empty_carve(cfg, split, ratio, f"cuts {len(texts[split])} of the corpus's {n} "
                                            f"characters into {split}, and no text", has_text,
                                            f"the corpus ({n} characters) is too short to cut into splits"))
        texts = {split: t for split, t in texts.items() if split == "train" or getattr(cfg, f"{split}_ratio")}
    for split, text in texts.items():
        if not text.strip():
            raise UserError(f"data.path={cfg.path}: the {split} split of the corpus is empty")
    return {split: [{"text": text}] for split, text in texts.items()}


def empty_carve(cfg, split: str, ratio: float, what: str, works, too_few: str) -> str:
    """The one-line refusal of a carved split left empty: the smallest ratio that `works`
    (on a grid of two significant digits, keeping val + test < 1), or say the data is too small."""
    other = cfg.test_ratio if split == "val" else cfg.val_ratio
    grid = sorted({m / 10 ** e for e in range(2, 10) for m in range(10, 100)})
    least = next((r for r in grid if r > ratio and r + other < 1 and works(r)), None)
    if least is None:
        source = f"data.path={cfg.path}" if cfg.path else f"data.hub={cfg.hub}"
        return f"{source}: {too_few}; give {split} its own file (data.{split}_file=)"
    return (f"data.{split}_ratio={ratio} {what}; raise data.{split}_ratio to at least {least:g} "
            f"or give a {split} file (data.{split}_file=)")
