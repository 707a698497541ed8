"""Every default is stated once, in msr/config/; checkpoints keep the settings they were trained with.

A conf/ YAML that sets a key to the value its schema (or, in a command's YAML, the chosen group
option) already gives it is refused: two statements of one default drift apart, and then the
YAML silently wins over the schema that the code and the tests construct. Experiment presets are
not checked: they pin each value of the recipe they reproduce (nanoGPT's shape, say) on purpose.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf

from msr.config import SCHEMAS, RecurrentConfig, TransformerConfig

CONF = Path(__file__).resolve().parents[1] / "conf"
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name not in ("hydra", "experiment"))
OPTION_FILES = sorted(f"{group}/{f.stem}" for group in GROUPS for f in (CONF / group).glob("*.yaml"))
COMMAND_FILES = sorted(p.stem for p in CONF.glob("*.yaml") if p.stem in SCHEMAS)


def read(name: str) -> tuple[list, DictConfig]:
    """A conf/ file's defaults list and its own keys (hydra's settings are not schema keys)."""
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    defaults = list(cfg.pop("defaults", []))
    cfg.pop("hydra", None)
    return defaults, cfg


def schema_node(defaults: list) -> DictConfig:
    """The structured config of the file's `/schema/<path>@_here_` entry."""
    path = next(d for d in defaults if isinstance(d, str) and d.startswith("/schema/"))
    return OmegaConf.structured(SCHEMAS[path.removeprefix("/schema/").removesuffix("@_here_")])


def option(name: str) -> DictConfig:
    """A group option as it composes: its schema with its own keys on top."""
    defaults, own = read(name)
    return OmegaConf.merge(schema_node(defaults), own)


def command_base(name: str) -> DictConfig:
    """A command's config before its own keys: its schema holding the group options it chooses."""
    defaults, _ = read(name)
    base = schema_node(defaults)
    for entry in defaults:
        if isinstance(entry, DictConfig | dict):
            (group, choice), = entry.items()
            if group in GROUPS:
                base[group] = option(f"{group}/{choice}")
    return base


def restated(base: DictConfig, own: dict | DictConfig, prefix: str = "") -> list[str]:
    """The keys of `own` whose value `base` holds already (compared after OmegaConf's typing,
    interpolations unresolved: `${paths.data}/scan` is a value too)."""
    own = OmegaConf.create(own)
    merged, plain = (OmegaConf.to_container(node, resolve=False, enum_to_str=True)
                     for node in (OmegaConf.merge(base, own), base))
    found = []
    for key, value in OmegaConf.to_container(own, resolve=False).items():
        if isinstance(value, dict) and isinstance(plain.get(key), dict):
            found += restated(base[key], value, f"{prefix}{key}.")
        elif plain[key] != "???" and merged[key] == plain[key]:
            found.append(f"{prefix}{key}")
    return found


@pytest.mark.parametrize("name", OPTION_FILES)
def test_a_group_option_sets_only_what_its_schema_does_not(name):
    defaults, own = read(name)
    assert restated(schema_node(defaults), own) == [], f"conf/{name}.yaml restates its schema's defaults"


@pytest.mark.parametrize("name", COMMAND_FILES)
def test_a_command_sets_only_what_its_schema_and_options_do_not(name):
    _, own = read(name)
    assert restated(command_base(name), own) == [], f"conf/{name}.yaml restates defaults"


def test_a_restated_default_is_caught():
    adamw = OmegaConf.structured(SCHEMAS["optimizer/adamw"])
    assert restated(adamw, OmegaConf.create({"lr": 3e-3, "eps": "1e-8", "weight_decay": 0.1})) == ["lr", "eps"]
    assert restated(OmegaConf.structured(SCHEMAS["model/transformer"]),
                    OmegaConf.create({"positions": "learned"})) == ["positions"]
    assert "trainer.log_every" in restated(command_base("train"), OmegaConf.create({"trainer": {"log_every": 50}}))
    assert restated(command_base("finetune"), OmegaConf.create({"optimizer": {"lr": 3e-3}})) == ["optimizer.lr"]


def test_every_conf_file_is_checked():
    """A new group or command file is covered without editing this test (or it fails here)."""
    checked = {f"{name}.yaml" for name in OPTION_FILES + COMMAND_FILES}
    unchecked = {str(p.relative_to(CONF)) for p in CONF.rglob("*.yaml")} - checked
    assert {p for p in unchecked if not p.startswith(("hydra/", "experiment/"))} == {"runs.yaml"}


# --- checkpoints -----------------------------------------------------------------------------

MODELS = [
    RecurrentConfig(name="gru", embedding_size=12, hidden_size=20, num_layers=2, dropout=0.1),
    RecurrentConfig(name="lstm", embedding_size=16, hidden_size=16, tie_embeddings=True),
    TransformerConfig(d_model=16, n_layers=2, n_heads=2, d_ff=24, positions="sinusoidal", max_len=24,
                      tie_embeddings=False, share_layers=True),
]


@pytest.mark.parametrize("cfg", MODELS, ids=lambda cfg: cfg.name)
def test_meta_json_holds_every_model_setting(cfg):
    """msr train writes `asdict(cfg.model)` into meta.json and msr evaluate builds `schema(**saved)`:
    with every field saved, a default changed later cannot change what an old checkpoint means."""
    saved = json.loads(json.dumps({"model": asdict(cfg)}))["model"]
    assert set(saved) == {f.name for f in fields(cfg)}
    assert type(cfg)(**saved) == cfg


@pytest.mark.parametrize("cfg", MODELS, ids=lambda cfg: cfg.name)
def test_a_saved_checkpoint_loads_as_the_model_it_was(cfg, tmp_path):
    import torch

    from msr.data.tokenizer import TextTokenizer
    from msr.eval.inference import load_checkpoint
    from msr.models import build_model
    from msr.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    tokenizer = TextTokenizer.build(["1 + 2 = 3", "4 * 5 = 0"])
    model = build_model(cfg, tokenizer.vocab_size).eval()
    save_checkpoint(tmp_path / "best", model, tokenizer, {"model": asdict(cfg), "vocab_size": tokenizer.vocab_size})
    loaded, _, meta = load_checkpoint(tmp_path / "best", torch.device("cpu"))
    assert meta["model"] == json.loads(json.dumps(asdict(cfg)))
    tokens = torch.tensor([tokenizer.encode_batch(["1 + 2 ="])[0]])
    torch.testing.assert_close(loaded(tokens)[0], model(tokens)[0], rtol=0, atol=0)


def test_a_meta_json_from_before_the_defaults_moved_keeps_its_model():
    """The schema's defaults changed (RecurrentConfig 128/256 -> 64/128, TransformerConfig 2 -> 3
    layers, to what conf/ always composed); meta.json of that time names every value itself."""
    old_transformer = {"name": "transformer", "d_model": 128, "n_layers": 2, "n_heads": 4, "d_ff": 512,
                       "dropout": 0.0, "positions": "learned", "max_len": 256, "tie_embeddings": True,
                       "share_layers": False}
    old_lstm = {"name": "lstm", "embedding_size": 128, "hidden_size": 256, "num_layers": 1, "dropout": 0.0,
                "tie_embeddings": False}
    # keys added later (positions options, RNN attention) default to what those models did
    added = {"transformer": {"random_positions": False, "random_range": "max_len", "random_target_gap": 0,
                             "softmax": "standard", "qkv_conv": 0, "coupling_tokens": [], "coupling_range": 32},
             "lstm": {"attention": "none", "input_feeding": False}}
    assert asdict(TransformerConfig(**old_transformer)) == {**old_transformer, **added["transformer"]}
    assert asdict(RecurrentConfig(**old_lstm)) == {**old_lstm, **added["lstm"]}
