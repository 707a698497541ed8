"""Scoring and checkpoints: exact match equals greedy decoding; checkpoints round-trip safely."""

from __future__ import annotations

import torch

from msr.config import ArithConfig, RecurrentConfig, SplitConfig, TrainerConfig
from msr.data.batching import encode
from msr.data.splits import generate_splits
from msr.data.tokenizer import TextTokenizer
from msr.eval.metrics import accuracy_by_steps, evaluate
from msr.models import build_model
from msr.train.checkpoint import load_meta, load_tokenizer, load_trainer_state, load_weights, save_checkpoint

CFG = ArithConfig(train=SplitConfig(size=300), val=SplitConfig(size=60), test=SplitConfig(size=60))


def greedy_answer(model, tokenizer, text: str, max_new: int = 5) -> str:
    prompt = tokenizer.encode_batch([text])[0] + [tokenizer.sep_id]
    logits, state = model(torch.tensor([prompt]))
    out = []
    for _ in range(max_new):
        token = int(logits[0, -1].argmax())
        if token == tokenizer.eos_id:
            break
        out.append(token)
        logits, state = model(torch.tensor([[token]]), state)
    return tokenizer.decode(out)


def test_exact_match_equals_greedy_decoding():
    torch.manual_seed(0)
    splits = generate_splits(CFG)
    tok = TextTokenizer.build(r["input"] + " " + r["target"] for r in splits["train"])
    train = encode(splits["train"], tok)
    model = build_model(RecurrentConfig(name="gru", embedding_size=16, hidden_size=32), tok.vocab_size)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for i in range(60):  # a partly trained model: some answers right, some wrong
        inputs, labels = train.batch(torch.arange(i % 5 * 60, i % 5 * 60 + 60))
        loss = torch.nn.functional.cross_entropy(model(inputs)[0].flatten(0, 1), labels.flatten(), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    test = encode(splits["test"], tok)
    result = evaluate(model, test, batch_size=16)
    with torch.no_grad():
        greedy = [greedy_answer(model, tok, r["input"]) == r["target"] for r in splits["test"]]
    assert 0 < sum(greedy) < len(greedy)
    assert result["accuracy"] == sum(greedy) / len(greedy)


def test_accuracy_by_steps_groups_examples():
    correct = torch.tensor([True, False, True, True, False])
    steps = torch.tensor([1, 1, 2, 3, -1])
    assert accuracy_by_steps(correct, steps) == {"1": 0.5, "2": 1.0, "3": 1.0}


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    cfg = RecurrentConfig(name="lstm", embedding_size=8, hidden_size=8, tie_embeddings=True)
    tok = TextTokenizer.build(["1 + 2 = 3"])
    model = build_model(cfg, tok.vocab_size)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.tensor([[1, 2]]))[0].sum().backward()
    opt.step()
    save_checkpoint(tmp_path / "last", model, tok, {"step": 7}, {"optimizer": opt.state_dict(), "step": 7})
    save_checkpoint(tmp_path / "last", model, tok, {"step": 8}, {"optimizer": opt.state_dict(), "step": 8})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]  # replaced whole, nothing left over
    # a crash between the two renames of a save: only .last.old is left; the next save restores it
    (tmp_path / "last").rename(tmp_path / ".last.old")
    (tmp_path / ".last.tmp").mkdir()
    save_checkpoint(tmp_path / "best", model, tok, {"step": 8})
    assert (tmp_path / ".last.old").exists()  # another checkpoint's save leaves it alone
    save_checkpoint(tmp_path / "last", model, tok, {"step": 8}, {"optimizer": opt.state_dict(), "step": 8})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", "last"]

    restored = build_model(cfg, tok.vocab_size)
    load_weights(tmp_path / "last", restored)
    x = torch.tensor([[4, 5, 6]])
    torch.testing.assert_close(restored(x)[0], model(x)[0], rtol=0, atol=0)
    assert restored.head.weight is restored.embed.weight
    assert load_meta(tmp_path / "last")["step"] == 8
    assert load_tokenizer(tmp_path / "last").to_str() == tok.to_str()
    state = load_trainer_state(tmp_path / "last")
    assert state["step"] == 8 and state["optimizer"]["state"]


def test_weights_packed_in_one_buffer_and_tied_weights_round_trip(tmp_path):
    """cuDNN keeps an RNN's weights as views of one flat buffer; tied embeddings are one tensor.
    Both must save (safetensors refuses shared buffers as they are) and load back exactly."""
    from msr.config import TransformerConfig

    lstm = build_model(RecurrentConfig(name="lstm", embedding_size=8, hidden_size=8, tie_embeddings=True), 11)
    weights = list(lstm.rnn.parameters())
    flat = torch.cat([w.detach().flatten() for w in weights])
    offset = 0
    for w in weights:  # the layout flatten_parameters() makes on a GPU
        w.data = flat[offset : offset + w.numel()].view_as(w)
        offset += w.numel()
    transformer = build_model(TransformerConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, max_len=16), 11)
    tokenizer = TextTokenizer.build(["a b"])
    for model in (lstm, transformer):
        save_checkpoint(tmp_path / "ckpt", model, tokenizer, {})
        fresh = build_model(RecurrentConfig(name="lstm", embedding_size=8, hidden_size=8, tie_embeddings=True), 11) \
            if model is lstm else build_model(TransformerConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, max_len=16), 11)
        load_weights(tmp_path / "ckpt", fresh)
        for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
            assert torch.equal(a, b), name
