"""Autocast follows the CPU: bf16 only where it is native, fp32 (with a warning) elsewhere.
The capability query is injected, so these tests do not depend on the machine's CPU."""

import logging

import pytest
import torch

from vis_d2.utils import precision
from vis_d2.utils.precision import CPU_BF16_ENV, CPUInfo, cpu_bf16_native, use_autocast


@pytest.fixture(autouse=True)
def fresh_log_once():
    precision._log_once.cache_clear()
    yield
    precision._log_once.cache_clear()


def test_autocast_on_the_cpu_only_where_bf16_is_native(caplog):
    with caplog.at_level(logging.INFO, logger="vis_d2.utils.precision"):
        assert use_autocast(True, "cpu", "SOLVER.AMP.ENABLED", bf16_native=lambda: True)
    assert "SOLVER.AMP.ENABLED: bf16 autocast on the CPU" in caplog.text
    assert "native bf16" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="vis_d2.utils.precision"):
        assert not use_autocast(True, "cpu", "TEST.AMP.ENABLED", bf16_native=lambda: False)
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    # names the key, the CPU's capability and the choice, and how to force bf16
    assert "TEST.AMP.ENABLED is ignored" in record.message
    assert torch.backends.cpu.get_cpu_capability() in record.message
    assert "no native bf16" in record.message and "running in fp32" in record.message
    assert f"{CPU_BF16_ENV}=1" in record.message


def test_no_request_no_autocast_and_cuda_keeps_fp16(caplog):
    with caplog.at_level(logging.INFO, logger="vis_d2.utils.precision"):
        assert not use_autocast(False, "cpu", "SOLVER.AMP.ENABLED", bf16_native=lambda: True)
        assert not use_autocast(False, "cuda", "SOLVER.AMP.ENABLED", bf16_native=lambda: True)
    assert caplog.text == ""
    # the CPU's bf16 has no say on CUDA
    with caplog.at_level(logging.INFO, logger="vis_d2.utils.precision"):
        assert use_autocast(True, "cuda:0", "SOLVER.AMP.ENABLED", bf16_native=lambda: False)
    assert "fp16 autocast on cuda:0" in caplog.text


def test_the_override_variable(monkeypatch):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    monkeypatch.delenv(CPU_BF16_ENV, raising=False)
    assert cpu_bf16_native()
    for value, expected in (("auto", True), ("0", False), ("no", False), ("1", True)):
        monkeypatch.setenv(CPU_BF16_ENV, value)
        assert cpu_bf16_native() is expected, value
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    monkeypatch.setenv(CPU_BF16_ENV, "auto")
    assert not cpu_bf16_native()
    monkeypatch.setenv(CPU_BF16_ENV, "1")
    assert cpu_bf16_native()
    monkeypatch.setenv(CPU_BF16_ENV, "maybe")
    with pytest.raises(ValueError, match=f"{CPU_BF16_ENV}='maybe': expected 1, 0 or auto"):
        cpu_bf16_native()


@pytest.mark.parametrize(
    "capability, bf16, amx, expected",
    [
        ("AVX2", False, False, "AVX2"),
        ("AVX512", False, False, "AVX-512"),
        ("AVX512", True, False, "AVX-512-BF16"),
        ("AVX512", True, True, "AMX"),
        # ONEDNN_MAX_CPU_ISA=AVX2 on an AMX machine: oneDNN runs no bf16, so no AMX class
        ("AVX2", False, True, "AVX2"),
    ],
)
def test_cpu_class(capability, bf16, amx, expected):
    info = CPUInfo("a CPU", capability, bf16, amx)
    assert info.cpu_class == expected
    assert info.as_dict()["cpu_class"] == expected
    assert info.as_dict()["cpu_bf16_native"] is bf16


def test_model_inference_amp_follows_the_cpu(monkeypatch):
    from detectron2.modeling import build_model
    from test_sgnet import tiny_cfg

    cfg = tiny_cfg()
    cfg.TEST.AMP.ENABLED = True
    monkeypatch.setenv(CPU_BF16_ENV, "0")
    assert not build_model(cfg).inference_amp
    monkeypatch.setenv(CPU_BF16_ENV, "1")
    assert build_model(cfg).inference_amp
