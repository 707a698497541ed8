"""Masked-LM pretraining (pretrain.objective=masked) and the prefix LM `msr finetune` makes of it:
BERT's masking rates, bidirectional and prefix attention masks, cached decoding of a prefix LM,
and a masked pretrain -> finetune run whose checkpoint evaluate and generate read as a prefix LM."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import read_metrics, run_msr

from msr.config import DecodeConfig, TransformerConfig
from msr.data.batching import IGNORE, encode, pack
from msr.eval.decoding import decode
from msr.eval.inference import load_checkpoint
from msr.eval.metrics import evaluate
from msr.eval.prompts import not_text, task_prompts
from msr.models import build_model
from msr.models.masks import visible_keys
from msr.train.masking import Masking, masked_splits

CORPUS = ["data=arith", "data.train.size=400", "data.val.size=40", "data.test.size=40", "data.tokenizer=word",
          "data.block_size=32", "trainer.batch_size=8", "trainer.max_steps=20", "trainer.eval_every=10",
          "trainer.log_every=10", "scheduler.warmup_steps=2"]
TINY_LM = [*CORPUS, "model.d_model=32", "model.n_layers=2", "model.n_heads=2", "model.d_ff=64", "model.max_len=64"]
SMALL_TASK = ["data.train.size=200", "data.val.size=40", "data.test.size=40", "trainer.max_steps=10",
              "trainer.eval_every=5", "trainer.batch_size=8", "scheduler.warmup_steps=2", "optimizer.lr=1e-2"]
SEP = 2  # the specials come first: <pad> 0, <unk> 1, <sep> 2, <eos> 3


def masking(vocab: int = 1000) -> Masking:
    return Masking(mask_id=vocab, ordinary=torch.arange(4, vocab))


def test_bert_masking_chooses_15_percent_and_replaces_80_10_10():
    tokens = torch.randint(4, 1000, (200, 100), generator=torch.Generator().manual_seed(1))
    inputs, labels = masking()(tokens, torch.Generator().manual_seed(0))
    chosen = labels != IGNORE
    assert chosen.sum(1).tolist() == [15] * 200  # round(0.15 x 100) per block, as BERT's data script
    assert torch.equal(labels[chosen], tokens[chosen])  # the targets are the original tokens...
    assert torch.equal(inputs[~chosen], tokens[~chosen])  # ...and nothing else changes
    n = int(chosen.sum())  # 3000: a share's standard error is at most 0.0073
    masked = (inputs[chosen] == 1000).sum() / n
    random = ((inputs[chosen] != 1000) & (inputs[chosen] != tokens[chosen])).sum() / n
    kept = (inputs[chosen] == tokens[chosen]).sum() / n
    assert abs(masked - 0.8) < 0.03 and abs(random - 0.1) < 0.03 and abs(kept - 0.1) < 0.03
    assert int(inputs[chosen & (inputs != 1000)].min()) >= 4  # a random replacement is never a special token


def test_the_loss_counts_the_chosen_positions_only_and_training_masks_afresh():
    blocks = pack(list(torch.randint(4, 50, (2000,), generator=torch.Generator().manual_seed(2))), 20)
    data = masked_splits({"train": blocks, "val": blocks}, masking(50), seed=0)
    val, train = data["val"], data["train"]
    torch.manual_seed(0)
    model = build_model(TransformerConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, max_len=32), 51)
    model.set_attention("bidirectional")
    with torch.no_grad():
        logits, _ = model.eval()(val.inputs)
    chosen = val.labels != IGNORE
    by_hand = -logits.log_softmax(-1).gather(2, blocks.inputs[..., None])[..., 0][chosen].mean()
    assert evaluate(model, val, 16)["loss"] == pytest.approx(float(by_hand), rel=1e-5)

    rows = torch.arange(8)
    first, second = train.batch(rows), train.batch(rows)
    assert not torch.equal(first[1], second[1])  # dynamic masking: another draw at every batch...
    assert ((first[1] != IGNORE).sum(1) == (train.labels[rows] != IGNORE).sum(1)).all()  # ...same count per row
    torch.manual_seed(5)
    again = train.batch(rows)
    torch.manual_seed(5)
    assert torch.equal(train.batch(rows)[0], again[0])  # from torch's seeded (and checkpointed) stream


def test_hand_built_masks_bidirectional_and_prefix():
    tokens = torch.tensor([[7, 8, SEP, 9, 10], [7, SEP, 9, 10, 0]])
    assert visible_keys("causal", tokens, SEP, past=0) is None  # SDPA's is_causal fast path
    assert visible_keys("bidirectional", tokens, SEP, past=0).all()
    expected = torch.tensor([
        [[1, 1, 1, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]],  # prefix 7 8 <sep>
        [[1, 1, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]],  # prefix 7 <sep>
    ], dtype=torch.bool)
    assert torch.equal(visible_keys("prefix", tokens, SEP, past=0)[:, 0], expected)
    assert visible_keys("prefix", tokens[:, -1:], SEP, past=5) is None  # after the cache: causal


@pytest.mark.parametrize("positions", ["learned", "rope", "alibi"])
def test_prefix_lm_cached_decoding_equals_full_recomputation(positions):
    torch.manual_seed(0)
    model = build_model(TransformerConfig(d_model=16, n_layers=2, n_heads=2, d_ff=32, max_len=32,
                                          positions=positions), 12).eval()
    model.set_attention("prefix", SEP)
    prompts = torch.tensor([[5, 6, 7, SEP], [7, 5, 6, SEP]])
    [[a], [b]] = decode(model, prompts.tolist(), eos_id=3, cfg=DecodeConfig(max_new_tokens=8), device="cpu",
                          banned=(0, 1, 2))
    for prompt, out in zip(prompts.tolist(), (a, b)):
        sequence = prompt + out.ids
        full, _ = model(torch.tensor([sequence]))  # the whole sequence in one pass, no cache
        scores = full[0, len(prompt) - 1 :].clone()
        scores[:, :3] = float("-inf")  # decode never writes <pad>, <unk>, <sep>
        chosen = out.ids + [3] if len(out.ids) < 8 else out.ids  # <eos> ended it, or max_new_tokens did
        assert scores.argmax(-1).tolist()[: len(chosen)] == chosen
        # step by step with the KV cache, the logits are the full pass's
        logits, state = model(torch.tensor([prompt]))
        steps = [logits[:, -1]]
        for token in out.ids[:-1]:
            logits, state = model(torch.tensor([[token]]), state)
            steps.append(logits[:, -1])
        assert torch.allclose(torch.cat(steps), full[0, len(prompt) - 1 : -1], atol=1e-5)
    # the input is read both ways: its first position sees the token after it
    changed = prompts.clone()
    changed[0, 1] = 8
    assert not torch.allclose(model(prompts)[0][0, 0], model(changed)[0][0, 0])


@pytest.fixture(scope="module")
def masked_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("masked")
    assert run_msr("pretrain", *TINY_LM, "pretrain.objective=masked", f"hydra.run.dir={folder}/pre") == 0
    return folder


def test_masked_pretraining_attends_both_ways_and_finetunes_into_a_prefix_lm(masked_run, in_tmp, capsys):
    pre = masked_run / "pre"
    meta = json.loads((pre / "checkpoints/best/meta.json").read_text())
    assert meta["objective"] == "masked" and meta["attention_mask"] == "bidirectional"
    metrics = read_metrics(pre)["metrics"]
    assert "val/bits_per_character" not in metrics and metrics["val/perplexity"] == pytest.approx(
        math.exp(metrics["val/loss"]))
    model, tokenizer, _ = load_checkpoint(pre / "checkpoints/best", "cpu")
    assert tokenizer.mask_id == tokenizer.vocab_size - 1  # <mask> appended: every other id as the task has it
    tokens = torch.tensor([tokenizer.encode_batch(["1 + 2 + 3"])[0]])
    later = tokens.clone()
    later[0, -1] = tokenizer.mask_id
    assert not torch.allclose(model(tokens)[0][0, 0], model(later)[0][0, 0])  # a later token reaches position 0

    assert run_msr("generate", f"run={pre}", "prompt=1 + 2") == 2
    assert "is a masked LM" in capsys.readouterr().err

    assert run_msr("finetune", f"init={pre}", *SMALL_TASK, "hydra.run.dir=ft") == 0
    best = in_tmp / "ft/checkpoints/best"
    meta = json.loads((best / "meta.json").read_text())
    assert meta["objective"] == "supervised" and meta["attention_mask"] == "prefix"
    model, tokenizer, _ = load_checkpoint(best, "cpu")
    assert model.attention_mask == "prefix" and model.sep_id == tokenizer.sep_id
    # the run's test scores are the prefix LM's: recomputed with the prefix mask they agree, with a
    # causal mask they do not; and msr evaluate reads the checkpoint as a prefix LM
    records = [json.loads(line) for line in (in_tmp / "ft/predictions.jsonl").read_text().splitlines()]
    test = encode(records, tokenizer)
    reported = read_metrics(in_tmp / "ft")["metrics"]["test/loss"]
    prefix = evaluate(model, test, 64)
    assert prefix["loss"] == pytest.approx(reported, rel=1e-5)
    assert prefix["logprobs"].tolist() == pytest.approx([r["target_logprob"] for r in records], abs=1e-4)
    model.set_attention("causal")
    causal = evaluate(model, test, 64)
    assert (causal["logprobs"] - prefix["logprobs"]).abs().max() > 0.05
    assert run_msr("evaluate", "run=ft", "hydra.run.dir=eval") == 0
    assert read_metrics(in_tmp / "eval")["metrics"]["test/loss"] == pytest.approx(reported, rel=1e-5)
    # generate's continuation scores as the prefix LM's, not as a causal reading of the same weights
    assert run_msr("generate", "run=ft", "prompt=1 + 2 =", "decode.max_new_tokens=4", "hydra.run.dir=gen") == 0
    [record] = [json.loads(line) for line in (in_tmp / "gen/generations.jsonl").read_text().splitlines()]
    prompt = task_prompts(tokenizer, ["1 + 2 ="])
    logprob = {}
    for mode in ("prefix", "causal"):
        model.set_attention(mode, tokenizer.sep_id)
        [[out]] = decode(model, prompt, tokenizer.eos_id, DecodeConfig(max_new_tokens=4), "cpu",
                         banned=not_text(tokenizer))
        logprob[mode] = out.logprob
    assert record["logprob"] == pytest.approx(logprob["prefix"], abs=1e-4)
    assert abs(logprob["causal"] - logprob["prefix"]) > 1e-3


@pytest.mark.parametrize("overrides, expected", [
    (["model=lstm"], "pretrain.objective='masked' is not allowed: needs model=transformer"),
    (TINY_LM[len(CORPUS):] + ["model.positions=none"],
     "model.positions='none' is not allowed: cannot tell order without a causal mask"),
])
def test_masked_pretraining_refuses_what_cannot_attend_both_ways(overrides, expected, in_tmp, capsys):
    assert run_msr("pretrain", *CORPUS, "pretrain.objective=masked", *overrides) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("msr: error: ") and expected in err
    assert not (in_tmp / "outputs").exists()  # refused before any work: no run folder


@pytest.mark.slow  # an end-to-end run; CI runs it
def test_a_resumed_masked_run_draws_the_masks_the_uninterrupted_one_drew(masked_run, in_tmp):
    """Training masks come from torch's stream, which checkpoints save: stopping and resuming
    changes no number."""
    assert run_msr("pretrain", *TINY_LM, "pretrain.objective=masked", "trainer.stop_at=10", "hydra.run.dir=run") == 0
    assert run_msr("pretrain", "resume=run") == 0
    assert read_metrics(in_tmp / "run")["metrics"] == read_metrics(masked_run / "pre")["metrics"]
