"""Built-in tasks as `datasets` Arrow tables, generated once per setting and cached by fingerprint.

The fingerprint hashes everything that decides the examples: the task's config (less the keys
that only present them: template, scratchpad, tokenizer) and the source of the generator and
split code. Same settings reuse the cache; any other setting, or an edit to a generator, makes
a new entry. An entry is written to a temporary folder and renamed into place, so a run killed
while generating never leaves a half-written cache behind.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

from msr.data import splits
from msr.data.tasks import TASKS

log = logging.getLogger("msr")

# keys applied to the generated splits, not part of generating them: every setting of them shares one
# cache entry (the folds of a cross-validation too: msr/data/folds.py cuts them from the cached train)
PRESENTATION_KEYS = ("template", "scratchpad", "tokenizer", "vocab_size", "block_size", "block_stride",
                     "folds", "fold")


def fingerprint(cfg) -> str:
    settings = {k: v for k, v in asdict(cfg).items() if k not in PRESENTATION_KEYS}
    code = inspect.getsource(TASKS[cfg.name]) + inspect.getsource(splits)
    text = json.dumps(settings, sort_keys=True, default=str) + code
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_generated(cfg, cache_root: Path):
    """The task's splits as a DatasetDict, from the cache when this setting was generated before."""
    from datasets import Dataset, DatasetDict, load_from_disk

    entry = Path(cache_root).expanduser() / "tasks" / f"{cfg.name}-{fingerprint(cfg)}"
    if entry.is_dir():
        log.info("data %s: cached at %s", cfg.name, entry)
        return load_from_disk(str(entry))
    records = splits.generate_splits(cfg)
    data = DatasetDict({name: Dataset.from_dict(columns(rows)) for name, rows in records.items()})
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{entry.name}."))
    try:
        data.save_to_disk(str(tmp))
        tmp.rename(entry)
    except OSError:
        if not entry.is_dir():  # another run that raced us to the same entry is fine
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("data %s: generated and cached at %s", cfg.name, entry)
    return load_from_disk(str(entry))


def columns(rows: list[dict]) -> dict[str, list]:
    return {key: [row[key] for row in rows] for key in rows[0]}
