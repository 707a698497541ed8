"""Dynamic int8 quantization (CPU) of the Linear, LSTM and GRU layers, kept in safetensors.

Which library: torch 2.13 still ships torch.ao.quantization.quantize_dynamic (deprecated, with
a warning, in favour of torchao). It has int8 kernels (fbgemm/x86, qnnpack on ARM) for Linear,
LSTM and GRU: weights int8 per output channel, activations quantized on the fly. torchao's
`quantize_` covers Linear layers only, and the recurrent layers are most of an LSTM's weights,
so torch.ao it is. Neither has an int8 nn.RNN: a vanilla RNN's recurrence stays fp32 (its output
layer is quantized), and the caller is told which layers stayed.

A quantized module's own state dict holds packed C++ objects, which only a pickle could keep.
The checkpoint instead holds each int8 weight with its per-channel scales (float32) and zero
points, and the float tensors as they are; loading builds the float model, quantizes the same
layers, and puts the stored int8 weights into them (`rebuild`): no pickle. msr compress scores
the model as loaded back, so its numbers are those evaluate will see.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from msr.errors import UserError

INT8_LAYERS = (nn.Linear, nn.LSTM, nn.GRU)  # what torch.ao's dynamic int8 has kernels for
SCHEME = "torch.ao dynamic int8, weights per output channel (symmetric), activations per batch"


def plan(model: nn.Module) -> tuple[list[str], list[str]]:
    """(layers int8 can take, recurrent layers it cannot: nn.RNN), by module name."""
    int8 = [name for name, m in model.named_modules() if type(m) in INT8_LAYERS]
    left = [name for name, m in model.named_modules() if type(m) is nn.RNN]
    return int8, left


def quantize(model: nn.Module, layers: list[str]) -> nn.Module:
    """`model` with `layers` (module names) as torch.ao dynamic int8 modules, in place, on CPU."""
    with warnings.catch_warnings():  # torch.ao's deprecation notices, on import and per layer: see above
        warnings.simplefilter("ignore")
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        return quantize_dynamic(model.cpu().eval(), {name: per_channel_dynamic_qconfig for name in layers},
                                dtype=torch.qint8, inplace=True)


def quantized_layers(model: nn.Module) -> list[str]:
    """The names of the model's torch.ao dynamic int8 layers."""
    return [name for name, m in model.named_modules()
            if type(m).__module__.startswith("torch.ao.nn.quantized.dynamic.modules") and type(m).__name__ in
            ("Linear", "LSTM", "GRU")]


def _weights_and_biases(module: nn.Module) -> dict[str, torch.Tensor | None]:
    """A quantized layer's int8 weights and float biases, by their float layer's names."""
    if isinstance(module._weight_bias(), tuple):  # Linear: (weight, bias)
        weight, bias = module._weight_bias()
        return {"weight": weight, "bias": bias}
    recurrent = module._weight_bias()  # LSTM/GRU: {"weight": {name: w}, "bias": {name: b}}
    return {**recurrent["weight"], **recurrent["bias"]}


def int8_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """What safetensors stores of a quantized model: `<layer>.<weight>.int8`, `.scales` and
    `.zero_points` for each int8 weight, every other tensor (biases included) as it is."""
    layers = quantized_layers(model)
    tensors = {}
    for layer in layers:
        for name, tensor in _weights_and_biases(model.get_submodule(layer)).items():
            key = f"{layer}.{name}"
            if tensor is None:
                continue
            if tensor.is_quantized:
                tensors[key + ".int8"] = tensor.int_repr()
                # float32 scales and int8 zero points (qint8's range) keep the overhead per row at 5 bytes
                tensors[key + ".scales"] = tensor.q_per_channel_scales().float()
                tensors[key + ".zero_points"] = tensor.q_per_channel_zero_points().to(torch.int8)
            else:
                tensors[key] = tensor.detach()
    for key, tensor in model.state_dict().items():
        if isinstance(tensor, torch.Tensor) and not any(key.startswith(layer + ".") for layer in layers):
            tensors[key] = tensor.detach()
    return {k: t.to("cpu", copy=True).contiguous() for k, t in tensors.items()}


def rebuild(model: nn.Module, tensors: dict[str, torch.Tensor], layers: list[str], device) -> nn.Module:
    """The float `model` as the int8 model `int8_tensors` stored: `layers` quantized, their
    int8 weights and biases put back, the float tensors loaded."""
    if torch.device(device).type != "cpu":
        raise UserError(f"this checkpoint is int8 (msr compress): torch.ao's int8 layers run on the CPU only; "
                        f"give device=cpu (it was {device})")
    inside = lambda key: any(key.startswith(layer + ".") for layer in layers)  # noqa: E731
    missing, unexpected = model.load_state_dict({k: v for k, v in tensors.items() if not inside(k)}, strict=False)
    missing = [k for k in missing if not inside(k)]
    if missing or unexpected:
        raise ValueError(f"the int8 weights do not fit the model: missing {missing}, unexpected {unexpected}")
    quantize(model, layers)
    for layer in layers:
        module = model.get_submodule(layer)
        stored = {name: _stored(tensors, f"{layer}.{name}") for name in _weights_and_biases(module)}
        if isinstance(module._weight_bias(), tuple):
            module.set_weight_bias(stored["weight"], stored["bias"])
        else:
            module.set_weight_bias(stored)
    return model.eval()


def _stored(tensors: dict[str, torch.Tensor], key: str) -> torch.Tensor | None:
    if key + ".int8" in tensors:
        return torch._make_per_channel_quantized_tensor(tensors[key + ".int8"], tensors[key + ".scales"].double(),
                                                        tensors[key + ".zero_points"].long(), 0)
    return tensors.get(key)  # a float bias, or None for a layer without one
