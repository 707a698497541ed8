"""`msr report`: aggregate runs across sweeps and seeds (collect -> aggregate -> paired -> write, plots).

Torch-free: it reads run folders (metrics.json, .hydra/config.yaml, history.jsonl,
predictions.jsonl) and imports matplotlib only to draw.
"""
