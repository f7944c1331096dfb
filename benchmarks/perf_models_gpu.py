"""GPU image-encoder throughput of the real-size models, fp32 against bf16 autocast.

Models (random weights: throughput does not depend on the values, and no download is
needed): SAM ViT-H (``build_sam("vit_h")``, 1024 x 1024 input) and SAM 2.1 Hiera-L
(``build_sam2("hiera_l")``, 1024 x 1024, ``forward_image``: trunk, neck and the decoder's
high-resolution projections, as ``set_image`` runs them). For each model and precision:
``--warmup`` untimed batches, then ``--iters`` timed batches of ``--batch-size`` images
(CUDA-synchronised), reported as images/s with peak memory, plus the largest relative
difference of the bf16 embedding from the fp32 one. TF32 matmuls stay at PyTorch's
default (off), so fp32 is true fp32.

Needs CUDA: without it the script says so (a ``PERF-SKIP`` line) and exits with status 0.
Run: ``.venv/bin/python benchmarks/perf_models_gpu.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from perf_report import headline, skipped

from refseg_bench.models.precision import autocast


def _sam_vit_h() -> tuple[str, Callable[[torch.Tensor], torch.Tensor]]:
    from refseg_bench.models.sam import build_sam

    sam = build_sam("vit_h", device="cuda")
    return "SAM ViT-H", sam.image_encoder


def _sam2_hiera_l() -> tuple[str, Callable[[torch.Tensor], torch.Tensor]]:
    from refseg_bench.models.sam2_models import build_sam2

    model = build_sam2("hiera_l", "2.1", device="cuda")
    return "SAM 2.1 Hiera-L", lambda x: model.forward_image(x)["vision_features"]


MODELS = {"sam_vit_h": _sam_vit_h, "sam2_hiera_l": _sam2_hiera_l}


@torch.inference_mode()
def measure(fn, x: torch.Tensor, precision: str, warmup: int, iters: int):
    """(images/s, peak GiB, output of the last batch as float32)."""
    torch.cuda.reset_peak_memory_stats()
    with autocast("cuda", precision):
        for _ in range(warmup):
            out = fn(x)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(iters):
            out = fn(x)
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    return x.shape[0] * iters / elapsed, torch.cuda.max_memory_allocated() / 2**30, out.float()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", choices=sorted(MODELS), default=sorted(MODELS))
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    args = p.parse_args()
    if not torch.cuda.is_available():
        reason = ("CUDA is not available: this benchmark measures GPU throughput of SAM ViT-H "
                  "and SAM 2 Hiera-L. Run it on a machine with an NVIDIA GPU.")
        print(reason)
        for key in args.models:
            skipped(f"GPU encoder {key}: bf16 over fp32 images/s", "no CUDA device")
        return
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, batch {args.batch_size}, "
          f"{args.iters} timed batches after {args.warmup} warm-up")
    print(f"{'model':<18}{'precision':>10}{'images/s':>11}{'peak GiB':>10}{'speed-up':>10}"
          f"{'max rel diff':>14}")
    torch.manual_seed(0)
    for key in args.models:
        name, fn = MODELS[key]()
        x = torch.randn(args.batch_size, 3, 1024, 1024, device="cuda")
        ips32, mem32, ref = measure(fn, x, "fp32", args.warmup, args.iters)
        ips16, mem16, out = measure(fn, x, "bf16", args.warmup, args.iters)
        rel = float((out - ref).abs().max() / ref.abs().max())
        print(f"{name:<18}{'fp32':>10}{ips32:>11.1f}{mem32:>10.1f}{'':>10}{'':>14}")
        print(f"{name:<18}{'bf16':>10}{ips16:>11.1f}{mem16:>10.1f}{ips16 / ips32:>9.2f}x"
              f"{rel:>14.2e}")
        headline(f"GPU encoder {key}: bf16 over fp32 images/s", ips16 / ips32,
                 note=f"fp32 {ips32:.1f}, bf16 {ips16:.1f} images/s, batch {args.batch_size}")
        del fn
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
