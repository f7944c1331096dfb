"""Precision option: fp32 everywhere, bf16 autocast only on CUDA."""

from __future__ import annotations

import pytest
import torch

from refseg_bench.models.precision import autocast, check_precision


def test_fp32_on_cpu_is_a_no_op():
    with autocast("cpu", "fp32"):
        y = torch.ones(2, 2) @ torch.ones(2, 2)
    assert y.dtype == torch.float32


def test_bf16_on_cpu_is_refused():
    with pytest.raises(ValueError, match="needs a CUDA device"):
        check_precision("bf16", "cpu")


def test_unknown_precision():
    with pytest.raises(ValueError, match="fp16"):
        check_precision("fp16", "cpu")


@pytest.mark.gpu
def test_bf16_autocast_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    with autocast("cuda", "bf16"):
        y = torch.ones(2, 2, device="cuda") @ torch.ones(2, 2, device="cuda")
    assert y.dtype == torch.bfloat16
