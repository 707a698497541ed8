"""Smaller copies of trained models: magnitude pruning (prune.py), dynamic int8 quantization
stored in safetensors (quantize.py), and what each costs and saves (measure.py)."""
