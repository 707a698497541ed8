"""`msr finetune init=RUN`: the init weights arrive intact, the vocabulary grows, freezing
freezes, learning rates follow the parts, LoRA trains only adapters and merges exactly."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from conftest import read_metrics, run_msr
from safetensors.torch import load_file

from msr.config import (AdamWConfig, LearningRateScale, LoraConfig, RecurrentConfig, SGDConfig, TransferConfig,
                        TransformerConfig)
from msr.data.tokenizer import TextTokenizer
from msr.errors import UserError
from msr.eval.inference import load_checkpoint
from msr.models import build_model
from msr.train.checkpoint import save_checkpoint
from msr.train.optim import build_optimizer
from msr.train.transfer import load_pretrained, lr_scales, prepare

TINY_LM = ["model.d_model=32", "model.n_layers=2", "model.n_heads=2", "model.d_ff=64", "model.max_len=64",
           "data.block_size=32", "trainer.batch_size=8", "trainer.max_steps=20", "trainer.eval_every=10",
           "trainer.log_every=10", "scheduler.warmup_steps=2"]
SMALL_TASK = ["data.train.size=200", "data.val.size=40", "data.test.size=40", "trainer.max_steps=10",
              "trainer.eval_every=5", "trainer.batch_size=8", "optimizer.lr=1e-2", "optimizer.weight_decay=0.1",
              "scheduler.warmup_steps=2"]
MODEL = TransformerConfig(d_model=16, n_layers=2, n_heads=2, d_ff=32, max_len=32)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A language model pretrained on arith's inputs (word tokens, no answers seen)."""
    folder = tmp_path_factory.mktemp("pretrain")
    assert run_msr("pretrain", "data=arith", "data.train.size=400", "data.val.size=40", "data.test.size=40",
                   "data.tokenizer=word", *TINY_LM, f"hydra.run.dir={folder}/run") == 0
    return folder / "run"


def checkpoint(tmp_path, vocabulary: list[str]):
    tokenizer = TextTokenizer.build([" ".join(vocabulary)], "word")
    torch.manual_seed(0)
    model = build_model(MODEL, tokenizer.vocab_size)
    save_checkpoint(tmp_path / "init", model, tokenizer, {"model": {"name": "transformer"}})
    return model, tokenizer


def test_pretrained_weights_load_intact_and_new_symbols_start_at_the_mean(tmp_path):
    model, tokenizer = checkpoint(tmp_path, ["1", "2", "+", "="])
    extended, new = tokenizer.extend(["1 + 2 = 3 #### 3"])
    assert new == ["####", "3"] and extended.vocab_size == tokenizer.vocab_size + 2
    assert extended.encode_batch(["1 + 2 ="]) == tokenizer.encode_batch(["1 + 2 ="])  # old ids keep their meaning

    loaded = load_pretrained(tmp_path / "init", MODEL, extended, "cpu")
    old, grown = model.state_dict(), loaded.state_dict()
    for name, tensor in old.items():
        if name in ("embed.weight", "head.weight"):
            assert torch.equal(grown[name][: tokenizer.vocab_size], tensor)
            assert torch.allclose(grown[name][tokenizer.vocab_size:], tensor.mean(0).expand(2, -1))
        else:
            assert torch.equal(grown[name], tensor), name
    assert loaded.head.weight is loaded.embed.weight  # the tie survives the growth


def test_wrong_sizes_are_refused_clearly(tmp_path):
    _, tokenizer = checkpoint(tmp_path, ["a", "b"])
    with pytest.raises(Exception, match="do not fit model transformer"):
        load_pretrained(tmp_path / "init", TransformerConfig(d_model=32, n_heads=2, max_len=32), tokenizer, "cpu")


def test_layer_decay_scales_each_layer_below_the_top():
    model = build_model(TransformerConfig(d_model=16, n_layers=3, n_heads=2, d_ff=32, max_len=8), 10)
    scales = lr_scales(model, LearningRateScale(embeddings=0.1, body=1.0, head=2.0, layer_decay=0.5), layers=3)
    assert scales["embed.weight"] == 0.1 and scales["positions"] == 0.1
    assert [scales[f"blocks.{i}.attn.qkv.weight"] for i in range(3)] == [0.25, 0.5, 1.0]
    assert scales["ln_f.weight"] == 1.0
    optimizer = build_optimizer(SGDConfig(lr=0.1, momentum=0.0), model, scales)
    lrs = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    assert lrs[id(model.blocks[0].mlp[0].weight)] == pytest.approx(0.025)
    assert lrs[id(model.embed.weight)] == pytest.approx(0.01)


def train_steps(transfer, steps: int = 3):
    """A few AdamW steps with weight decay, the optimizer built as finetune builds it."""
    model = transfer.model
    optimizer = build_optimizer(AdamWConfig(lr=0.05, weight_decay=0.1), model, transfer.lr_scale, transfer.new_rows)
    tokens = torch.randint(0, model.embed.num_embeddings, (4, 12), generator=torch.Generator().manual_seed(0))
    for _ in range(steps):
        logits, _ = model(tokens)
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens.roll(-1, 1).flatten()).backward()
        optimizer.step()
        optimizer.zero_grad()


def test_lora_trains_only_the_adapters_and_new_rows_and_merges_to_the_same_logits(tmp_path):
    _, tokenizer = checkpoint(tmp_path, ["1", "2", "+", "="])
    extended, new = tokenizer.extend(["1 + 2 = 3"])
    model = load_pretrained(tmp_path / "init", MODEL, extended, "cpu")
    before = {n: t.clone() for n, t in model.state_dict().items()}
    transfer = prepare(model, MODEL, TransferConfig(lora=LoraConfig(rank=4, target_modules=["qkv", "mlp.0"])),
                       len(new), extended.vocab_size)
    train_steps(transfer)
    after = {n.replace(".base_layer", ""): t for n, t in model.state_dict().items()}  # peft's names for the wrapped
    changed = {n for n in after if n not in before or not torch.equal(after[n], before[n])}
    assert changed and all("lora_" in n or n in ("embed.weight", "head.weight") for n in changed), changed  # tied
    assert torch.equal(after["embed.weight"][:-1], before["embed.weight"][:-1])  # only the new symbol's row moved
    assert not torch.equal(after["embed.weight"][-1], before["embed.weight"][-1])
    assert transfer.trainable() == sum(p.numel() for n, p in model.named_parameters() if "lora_" in n) + 16

    merged = transfer.export()
    assert not any("lora" in n for n in merged.state_dict())
    tokens = torch.tensor([[0, 3, 4, 5, 6, 7]])
    model.eval(), merged.eval()
    assert torch.allclose(model(tokens)[0], merged(tokens)[0], atol=1e-5)


def test_every_lora_target_must_name_a_layer(tmp_path):
    _, tokenizer = checkpoint(tmp_path, ["1", "2", "+", "="])
    model = load_pretrained(tmp_path / "init", MODEL, tokenizer, "cpu")
    with pytest.raises(UserError, match=r"\['qkv', 'prj'\]: prj match no layer peft can adapt .*this model's "
                                        r"Linear layers: blocks.N.attn.proj, blocks.N.attn.qkv, blocks.N.mlp.0"):
        prepare(model, MODEL, TransferConfig(lora=LoraConfig(rank=4, target_modules=["qkv", "prj"])), 0, 8)
    # a name peft matches by its end, as it matches
    prepare(model, MODEL, TransferConfig(lora=LoraConfig(rank=4, target_modules=["attn.qkv", "mlp.2"])), 0, 8)


def test_a_head_learning_rate_on_a_tied_head_is_warned_about(tmp_path, caplog):
    caplog.set_level("WARNING", logger="msr")
    _, tokenizer = checkpoint(tmp_path, ["1", "2", "+", "="])
    tied = load_pretrained(tmp_path / "init", MODEL, tokenizer, "cpu")
    transfer = prepare(tied, MODEL, TransferConfig(lr_scale=LearningRateScale(head=100)), 0, 8)
    assert "finetune.lr_scale.head=100" in caplog.text and "model.tie_embeddings" in caplog.text
    assert set(transfer.lr_scale.values()) == {1.0}  # what the warning says: nothing takes it
    caplog.clear()
    untied = TransformerConfig(d_model=16, n_layers=2, n_heads=2, d_ff=32, max_len=32, tie_embeddings=False)
    transfer = prepare(build_model(untied, 8), untied, TransferConfig(lr_scale=LearningRateScale(head=100)), 0, 8)
    assert transfer.lr_scale["head.weight"] == 100 and not caplog.text


def test_the_logged_learning_rate_is_the_body_s(pretrained, in_tmp):
    assert run_msr("finetune", f"init={pretrained}", *SMALL_TASK, "scheduler=constant", "scheduler.warmup_steps=0",
                   "finetune.lr_scale.embeddings=0.1", "finetune.lr_scale.head=3", "hydra.run.dir=ft") == 0
    logged = [json.loads(line) for line in (in_tmp / "ft/history.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in logged if "lr" in r]
    assert lrs and all(lr == pytest.approx(1e-2) for lr in lrs)  # optimizer.lr: the body's scale is 1


def test_finetune_may_lengthen_learned_positions_and_the_new_ones_train(pretrained, in_tmp, capsys):
    long = [f"data.{split}.{key}" for split in ("train", "val", "test") for key in ("min_steps=14", "max_steps=16")]
    args = ["finetune", f"init={pretrained}", *SMALL_TASK, "data.scratchpad=true", *long, "finetune.freeze=embeddings"]
    assert run_msr(*args, "hydra.run.dir=short") == 2
    assert "raise model.max_len to at least" in capsys.readouterr().err  # advice that finetune now takes
    assert run_msr(*args, "model.max_len=96", "hydra.run.dir=ft") == 0
    init = load_file(str(pretrained / "checkpoints/best/model.safetensors"))["positions"]
    tuned = load_file(str(in_tmp / "ft/checkpoints/best/model.safetensors"))["positions"]
    assert tuned.shape == (96, 32) and torch.equal(tuned[:64], init)  # frozen: the old rows as pretrained
    assert not torch.allclose(tuned[64:70], init.mean(0).expand(6, -1))  # the new rows started at the mean, trained
    assert json.loads((in_tmp / "ft/checkpoints/best/meta.json").read_text())["model"]["max_len"] == 96
    assert run_msr(*args, "model.max_len=32", "hydra.run.dir=shorter") == 2
    assert "model.max_len may grow, not shrink" in capsys.readouterr().err


def test_finetune_from_a_pretrained_run_records_its_weights_and_grows_the_vocabulary(pretrained, in_tmp):
    assert run_msr("finetune", f"init={pretrained}", "data.scratchpad=true", *SMALL_TASK,
                   "finetune.freeze=lower:1", "hydra.run.dir=ft") == 0
    record = read_metrics(in_tmp / "ft")
    init_file = pretrained / "checkpoints/best/model.safetensors"
    assert record["init"]["weights_sha256"] == hashlib.sha256(init_file.read_bytes()).hexdigest()
    assert record["init"]["new_symbols"] == ["####", ","] or set(record["init"]["new_symbols"]) == {"####", ","}
    assert "test/accuracy" in record["metrics"]

    # frozen: the embeddings' old rows and the lowest block stay as pretrained; the rest trained
    init, tuned = load_file(str(init_file)), load_file(str(in_tmp / "ft/checkpoints/best/model.safetensors"))
    rows = init["embed.weight"].shape[0]
    assert torch.equal(tuned["embed.weight"][:rows], init["embed.weight"])
    assert not torch.equal(tuned["embed.weight"][rows:], init["embed.weight"].mean(0).expand(2, -1))
    assert torch.equal(tuned["positions"], init["positions"])
    assert all(torch.equal(tuned[n], t) for n, t in init.items() if n.startswith("blocks.0."))
    assert not torch.equal(tuned["blocks.1.mlp.0.weight"], init["blocks.1.mlp.0.weight"])
    meta = json.loads((in_tmp / "ft/checkpoints/best/meta.json").read_text())
    assert meta["vocab_size"] == rows + 2 and meta["model"]["d_model"] == 32  # the init run's model


def test_a_lora_run_saves_a_merged_model_that_evaluate_reads(pretrained, in_tmp):
    assert run_msr("finetune", f"init={pretrained}", *SMALL_TASK, "finetune.lora.rank=4", "hydra.run.dir=ft") == 0
    best = in_tmp / "ft/checkpoints/best"
    assert not any("lora" in n for n in load_file(str(best / "model.safetensors")))
    assert any("lora_A" in n for n in load_file(str(best / "training_model.safetensors")))
    model, _, _ = load_checkpoint(best, "cpu")  # a plain model, no peft needed
    record = read_metrics(in_tmp / "ft")
    assert record["parameters"] == sum(p.numel() for p in model.parameters())  # the model's size, frozen or not
    assert record["init"]["trainable_parameters"] < record["parameters"] / 4
    assert run_msr("evaluate", "run=ft", "hydra.run.dir=ev") == 0
    assert read_metrics(in_tmp / "ev")["metrics"]["test/accuracy"] >= 0
    # evaluate scores the merged model: the numbers the run gave its own best model on test
    scored = read_metrics(in_tmp / "ev")["metrics"]
    assert scored["test/accuracy"] == pytest.approx(record["metrics"]["test/accuracy"])
    assert scored["test/loss"] == pytest.approx(record["metrics"]["test/loss"], rel=1e-4)
    # merged: every adapted layer's weight moved from init's, and nothing else did
    init = load_file(str(pretrained / "checkpoints/best/model.safetensors"))
    merged = load_file(str(best / "model.safetensors"))
    assert init.keys() == merged.keys()
    adapted = {n for n in init if n.endswith(("qkv.weight", "proj.weight", "mlp.0.weight", "mlp.2.weight"))}
    assert len(adapted) == 8 and all(not torch.equal(merged[n], init[n]) for n in adapted)
    assert all(torch.equal(merged[n], init[n]) for n in init.keys() - adapted)


@pytest.mark.parametrize("override, message", [
    ("finetune.lora.target_modules=[nothing]", "match no layer peft can adapt"),
    ("finetune.lora.target_modules=[qkv,head]", "whose weights are also the embeddings (model.tie_embeddings)"),
    ("data.tokenizer=char", "a fine-tuned model keeps its tokenizer"),
    ("model.d_model=64", "model.d_model=64, but init="),
    ("model.n_heads=4", "keeps the init run's architecture (only model.dropout may change)"),
])
def test_bad_transfer_settings_are_one_line_errors(pretrained, in_tmp, capsys, override, message):
    lora = ["finetune.lora.rank=2"] if "lora" in override else []
    assert run_msr("finetune", f"init={pretrained}", *SMALL_TASK, *lora, override, "hydra.run.dir=ft") == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize("args, message", [
    (["init=nowhere"], "init='nowhere' is not allowed: must be an existing run folder"),
    (["finetune.lora.rank=4", "finetune.freeze=embeddings"], "must be none with LoRA"),
    (["finetune.freeze=top:2"], "one of none, embeddings, lower:N, all_but_head"),
    (["finetune.freeze=lower:5"], "finetune.freeze='lower:5' is not allowed: the model has 2 layers"),
    (["model=lstm"], "is a transformer run; model=lstm cannot take its weights"),
])
def test_bad_finetune_config_is_refused_before_a_run_folder(pretrained, in_tmp, capsys, args, message):
    if not any(a.startswith("init=") for a in args):
        args.append(f"init={pretrained}")
    assert run_msr("finetune", *args) == 2
    assert message in capsys.readouterr().err
    assert not (in_tmp / "outputs").exists()


@pytest.mark.parametrize("spec, trains", [
    ("embeddings", {"blocks.0", "blocks.1", "ln_f"}),
    ("lower:1", {"blocks.1", "ln_f"}),
    ("all_but_head", {"embed"}),  # tied: the head is the embedding matrix
])
def test_freezing_leaves_only_the_named_parts_trainable(tmp_path, spec, trains):
    _, tokenizer = checkpoint(tmp_path, ["1", "2", "+", "="])
    model = load_pretrained(tmp_path / "init", MODEL, tokenizer, "cpu")
    prepare(model, MODEL, TransferConfig(freeze=spec), new_symbols=0, vocab_size=8)
    trainable = {".".join(n.split(".")[:2 if n.startswith("blocks") else 1])
                 for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == trains


def test_lower_layers_of_a_recurrent_model_freeze_by_layer_index():
    cfg = RecurrentConfig(name="lstm", embedding_size=8, hidden_size=8, num_layers=2)
    model = build_model(cfg, 6)
    prepare(model, cfg, TransferConfig(freeze="lower:1"), new_symbols=0, vocab_size=6)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"rnn.weight_ih_l1", "rnn.weight_hh_l1", "rnn.bias_ih_l1", "rnn.bias_hh_l1",
                         "head.weight", "head.bias"}


def test_a_shared_block_cannot_freeze_by_layer(tmp_path):
    cfg = TransformerConfig(d_model=16, n_layers=3, n_heads=2, d_ff=32, max_len=8, share_layers=True)
    with pytest.raises(UserError, match="every layer is one block"):
        prepare(build_model(cfg, 6), cfg, TransferConfig(freeze="lower:1"), new_symbols=0, vocab_size=6)


def test_resuming_with_other_transfer_settings_is_refused(pretrained, in_tmp, capsys):
    assert run_msr("finetune", f"init={pretrained}", *SMALL_TASK, "hydra.run.dir=ft") == 0
    assert run_msr("finetune", "resume=ft", "trainer.max_steps=20", "finetune.freeze=embeddings") == 2
    assert "finetune.freeze differs from the run's" in capsys.readouterr().err
    assert run_msr("finetune", "resume=ft", "trainer.max_steps=20") == 0  # the same settings go on
    assert read_metrics(in_tmp / "ft")["steps"] == 20
