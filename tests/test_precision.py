"""trainer.precision=auto: what it picks for each model and device."""

import pytest

torch = pytest.importorskip("torch")

from msr.config.model import TransformerConfig  # noqa: E402
import msr.device  # noqa: E402
from msr.device import BF16_MIN_WIDTH, check_precision  # noqa: E402
from msr.errors import UserError  # noqa: E402
from msr.models.transformer import TransformerLM  # noqa: E402


def transformer(width: int) -> TransformerLM:
    return TransformerLM(TransformerConfig(d_model=width, n_layers=1, n_heads=4, d_ff=width, max_len=8), 11)


@pytest.fixture
def gpu_with_bf16(monkeypatch):
    """Ask as if on a GPU with bf16 (no GPU is needed to test the choice); TF32 restored after."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    before = torch.get_float32_matmul_precision()
    yield torch.device("cuda")
    torch.set_float32_matmul_precision(before)


def test_auto_is_fp32_on_the_cpu_whatever_the_model():
    assert check_precision("auto", torch.device("cpu"), transformer(BF16_MIN_WIDTH)) is torch.float32
    assert torch.get_float32_matmul_precision() == "highest"  # nothing changed for a CPU run


def test_auto_on_a_gpu_gives_a_wide_transformer_bf16(gpu_with_bf16):
    assert check_precision("auto", gpu_with_bf16, transformer(BF16_MIN_WIDTH)) is torch.bfloat16
    assert torch.get_float32_matmul_precision() == "highest"


@pytest.mark.parametrize("model", [transformer(BF16_MIN_WIDTH // 2), torch.nn.LSTM(8, 8)], ids=["narrow", "lstm"])
def test_auto_on_a_gpu_keeps_launch_bound_models_and_rnns_in_fp32_with_tf32(gpu_with_bf16, model):
    assert check_precision("auto", gpu_with_bf16, model) is torch.float32
    assert torch.get_float32_matmul_precision() == "high"  # TF32


def test_explicit_precisions_are_kept():
    assert check_precision("bf16", torch.device("cpu"), transformer(8)) is torch.bfloat16
    assert check_precision("fp32", torch.device("cpu")) is torch.float32


def test_bf16_on_a_cpu_without_onednns_bf16_lstm_refuses_only_lstms(monkeypatch):
    """Where nn.LSTM cannot run under CPU bf16 autocast, an LSTM model is refused with the fix;
    the other models (nn.RNN and nn.GRU autocast fine) keep bf16."""
    monkeypatch.setattr(msr.device, "cpu_runs_bf16_lstm", lambda: False)
    lstm_model = torch.nn.Sequential(torch.nn.Embedding(5, 4), torch.nn.LSTM(4, 4))
    with pytest.raises(UserError, match="no bf16 LSTM .* use trainer.precision=fp32"):
        check_precision("bf16", torch.device("cpu"), lstm_model)
    for model in (transformer(8), torch.nn.GRU(4, 4), torch.nn.RNN(4, 4)):
        assert check_precision("bf16", torch.device("cpu"), model) is torch.bfloat16
    assert check_precision("fp32", torch.device("cpu"), lstm_model) is torch.float32
