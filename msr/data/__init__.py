"""Tasks, tokenizer and batching: from a data config to tensors a model can train on."""
