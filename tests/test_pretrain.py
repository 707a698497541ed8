"""`msr pretrain`: language modelling on a corpus or a task's inputs, and text from `msr generate`."""

from __future__ import annotations

import json

from conftest import read_metrics, run_msr

TINY_LM = ["model.d_model=32", "model.n_layers=1", "model.n_heads=2", "model.d_ff=64", "model.max_len=16",
           "data.block_size=16", "trainer.batch_size=8", "trainer.max_steps=60", "trainer.eval_every=20",
           "trainer.log_every=10", "scheduler.warmup_steps=5"]


def corpus(folder):
    (folder / "corpus.txt").write_text("to be or not to be, that is the question.\n" * 60)
    return ["data=files", "data.path=corpus.txt", "data.format=text", "data.tokenizer=char"]


def test_pretraining_lowers_the_loss_and_leaves_a_language_model(in_tmp):
    assert run_msr("pretrain", *corpus(in_tmp), *TINY_LM, "hydra.run.dir=run") == 0
    metrics = read_metrics(in_tmp / "run")
    history = [json.loads(line) for line in (in_tmp / "run/history.jsonl").read_text().splitlines()]
    losses = [h["train/loss"] for h in history if "train/loss" in h]
    assert losses[-1] < losses[0] - 0.5
    val = metrics["metrics"]
    assert val["val/perplexity"] > 1 and abs(val["val/bits_per_character"] - val["val/loss"] / 0.6931472) < 1e-4
    meta = json.loads((in_tmp / "run/checkpoints/best/meta.json").read_text())
    assert meta["objective"] == "lm"

    # generate continues the text in the corpus's characters, up to max_new_tokens (a corpus has no end)
    assert run_msr("generate", "run=run", "prompt=to be", "decode.max_new_tokens=12", "hydra.run.dir=gen") == 0
    [record] = [json.loads(line) for line in (in_tmp / "gen/generations.jsonl").read_text().splitlines()]
    assert 8 <= len(record["generation"]) <= 12 and set(record["generation"]) <= set("to be or not, that is the question.\n")


def test_a_tasks_inputs_pretrain_without_their_answers(in_tmp):
    """With a scratchpad the targets hold words no input has ("2 , 6 , 4 #### 4"): the corpus
    of inputs alone leaves them out of the vocabulary, and "=" is always followed by <eos>."""
    assert run_msr("pretrain", "data=arith", "data.train.size=400", "data.val.size=40", "data.test.size=40",
                   *TINY_LM, "data.tokenizer=word", "data.scratchpad=true", "hydra.run.dir=run") == 0
    assert {"val/loss", "test/loss"} <= set(read_metrics(in_tmp / "run")["metrics"])
    vocabulary = set(json.loads((in_tmp / "run/checkpoints/best/tokenizer.json").read_text())["model"]["vocab"])
    assert vocabulary == {"<pad>", "<unk>", "<sep>", "<eos>", "+", "-", "*", "=", *"0123456789"}
    assert run_msr("generate", "run=run", "prompt=3 + 4 * 2 =", "decode.max_new_tokens=2", "hydra.run.dir=gen") == 0
    [record] = [json.loads(line) for line in (in_tmp / "gen/generations.jsonl").read_text().splitlines()]
    assert record["generation"].split()[0] == "<eos>"  # what the stream puts after every input: no answer


def test_a_block_longer_than_a_split_is_a_clear_error(in_tmp, capsys):
    assert run_msr("pretrain", *corpus(in_tmp), *TINY_LM, "data.block_size=5000", "model.max_len=5000",
                   "hydra.run.dir=run") == 2
    assert "not enough for one block of data.block_size=5000" in capsys.readouterr().err


def test_the_nanogpt_cpu_preset_composes(capsys):
    assert run_msr("pretrain", "+experiment=shakespeare_char_cpu", "--cfg", "job") == 0
    out = capsys.readouterr().out
    assert "block_size: 64" in out and "n_layers: 4" in out and "batch_size: 12" in out and "max_steps: 1200" in out


def test_the_nanogpt_gpu_preset_trains_nanogpts_shape_and_estimates_like_it(in_tmp):
    """+experiment=shakespeare_char: 6x6x384 at block 256, validation estimated on 200 batches of 64."""
    data = corpus(in_tmp)
    (in_tmp / "corpus.txt").write_text("to be or not to be, that is the question.\n" * 200)  # val holds a block
    assert run_msr("pretrain", "+experiment=shakespeare_char", *data, "trainer.max_steps=2",
                   "scheduler.warmup_steps=1", "trainer.eval_every=2", "trainer.eval_iters=1",
                   "trainer.batch_size=2", "logger.tensorboard=false", "hydra.run.dir=run") == 0
    record = json.loads((in_tmp / "run/metrics.json").read_text())
    vocab = json.loads((in_tmp / "run/checkpoints/best/meta.json").read_text())["vocab_size"]
    # 6 blocks of 12 d^2 weights and 13 d biases and gains, the final norm, positions, tied embeddings
    assert record["parameters"] == 6 * 12 * 384**2 + 6 * 13 * 384 + 2 * 384 + 256 * 384 + vocab * 384
    config = (in_tmp / "run/.hydra/config.yaml").read_text()
    assert "eval_iters: 1" in config and "eval_batch_size: 64" in config and "dropout: 0.2" in config


def test_a_vocabulary_built_from_a_task_corpus_splits_at_eos():
    """The corpus of a task's inputs joins them with <eos>: "2 =<eos>3 + 1 =" holds the words
    "=" and "3", never "=<eos>3" (which would leave "=" unknown)."""
    from msr.data.tokenizer import TextTokenizer

    words = TextTokenizer.build(["1 + 2 =<eos>3 + 1 =<eos>"], "word")
    assert set(words.tokenizer.get_vocab()) == {"<pad>", "<unk>", "<sep>", "<eos>", "1", "+", "2", "=", "3"}
    chars = TextTokenizer.build(["ab<eos>a"], "char")
    assert set(chars.tokenizer.get_vocab()) == {"<pad>", "<unk>", "<sep>", "<eos>", "a", "b"}
