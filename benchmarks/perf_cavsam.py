"""Per-episode time of the ``cavsam`` adapter, broken down by stage: reference mask (SAM 2's
frame-0 mask, weak references only), LoRA training, DDIM inversion, frame generation,
TTGA and SAM 2 propagation.

CPU section: the packaged tiny preset (random tiny SAM 2 at 128 px, random tiny Stable
Diffusion at 32 px; what ``size: auto`` falls back to without the official files) on
generated 240 x 320 1-shot episodes, in three settings side by side: every episode with a
new reference and target (nothing cached), the same reference in every episode (its LoRA
and inversion cached after the first), and the plain two-frame video (no DBST, no TTGA).

GPU section: the real size (SAM 2.0 Hiera-tiny at 1024, Stable Diffusion 2.1-base at 512,
the paper's 200 LoRA steps, 20 inversion steps, 9 frames, 100 TTGA steps) on random
weights unless the official files are in the checkpoint directory (speed does not depend
on the values), CUDA-synchronised. Without CUDA it prints why and exits 0.

Run: ``.venv/bin/python benchmarks/perf_cavsam.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from blob_episodes import make_episode
from perf_report import headline, skipped

from refseg_bench.episodes import EpisodeBatch
from refseg_bench.methods.cavsam.timing import STAGES


def packaged_presets() -> dict:
    from omegaconf import OmegaConf

    from refseg_bench.config import resolve_config

    return OmegaConf.to_container(resolve_config(["method=cavsam"]).method_args, resolve=True)


def build(device: torch.device, size: str, **sections):
    from refseg_bench.methods.cavsam.adapter import CAVSAM

    options = {**packaged_presets(), "size": size, **sections}
    method = CAVSAM.from_config(options)
    method.setup(device, None)
    return method


def episodes(n: int, size, shared_reference: bool, seed: int) -> list:
    """``n`` generated 1-shot episodes (images drawn from ``seed``: another seed, other
    images, so no cache entry of an earlier setting applies)."""
    rng = np.random.default_rng(seed)
    out = [make_episode(seed * 1000 + i, size, rng)[0] for i in range(n)]
    if shared_reference:
        for e in out[1:]:
            e.support_images = list(out[0].support_images)
            e.annotations = list(out[0].annotations)
    return out


def breakdown(method, eps: list, warmup: int) -> dict[str, float]:
    """Mean seconds per episode and stage over ``eps`` after ``warmup`` of them."""
    totals: dict[str, float] = {s: 0.0 for s in (*STAGES, "total")}
    for i, e in enumerate(eps):
        t0 = time.perf_counter()
        with torch.no_grad():
            method.predict(EpisodeBatch([e], "mask"))
        if i < warmup:
            continue
        totals["total"] += time.perf_counter() - t0
        for k, v in method.last_timings.items():
            totals[k] = totals.get(k, 0.0) + v
    n = max(1, len(eps) - warmup)
    return {k: v / n for k, v in totals.items()}


def print_table(rows: dict[str, dict[str, float]]) -> None:
    stages = [s for s in (*STAGES, "total") if any(r.get(s, 0) > 0 for r in rows.values())]
    print(f"{'setting':28s}" + "".join(f"{s:>12s}" for s in stages) + "   (s / episode)")
    for name, r in rows.items():
        print(f"{name:28s}" + "".join(f"{r.get(s, 0.0):12.3f}" for s in stages))
    base = rows[next(iter(rows))]["total"]
    for name, r in list(rows.items())[1:]:
        print(f"  {name}: {base / r['total']:.2f}x faster than {next(iter(rows))}")


def cpu_section(args) -> None:
    device = torch.device("cpu")
    torch.set_num_threads(args.threads)
    print(f"\n== CPU, tiny preset ({torch.get_num_threads()} threads), 1-shot mask episodes "
          f"{args.size[1]}x{args.size[0]}, {args.episodes} timed after {args.warmup} warm-up")
    full = build(device, "tiny")
    n = args.episodes + args.warmup
    rows = {"full, new images": breakdown(full, episodes(n, args.size, False, 0), args.warmup),
            "full, reference reused": breakdown(full, episodes(n, args.size, True, 1),
                                                args.warmup)}
    plain = build(device, "tiny", dbst={"enabled": False}, ttga={"enabled": False})
    rows["two-frame video"] = breakdown(plain, episodes(n, args.size, False, 2), args.warmup)
    print_table(rows)
    print(f"LoRA / inversion cache over both full runs: {full.dbst.counts}")
    for name, r in rows.items():
        headline(f"cavsam CPU, tiny preset, {name}: seconds per episode", r["total"],
                 unit="s", higher=False)


def gpu_section(args) -> None:
    from refseg_bench.presets import missing_checkpoints

    device = torch.device(args.real_device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("\n== GPU, real size: skipped (no CUDA device; run on a machine with a GPU)")
        skipped("cavsam GPU, real size: seconds per episode", "no CUDA device", unit="s")
        return
    official = not missing_checkpoints(["sam2_hiera_t", "sd21_base"])
    # without the official files: random weights of the real architectures
    model = {} if official else {"sam2_checkpoint": None, "sd_checkpoint": None}
    method = build(device, "real", model=model, ttga={"steps": args.real_ttga_steps},
                   dbst={"lora_steps": args.real_lora_steps, "num_frames": args.real_frames,
                         "inversion_steps": args.real_inversion_steps})
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)
    print(f"\n== {name}, real size ({'official' if official else 'random'} weights): SAM 2.0 "
          f"Hiera-tiny at 1024, SD 2.1-base at 512, LoRA {args.real_lora_steps} steps, "
          f"inversion {args.real_inversion_steps}, Nv {args.real_frames}, TTGA "
          f"{args.real_ttga_steps} steps; {args.real_episodes} episodes after 1 warm-up")
    n = args.real_episodes + 1
    print_table({"full, new images": breakdown(method, episodes(n, (480, 640), False, 0), 1)})


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--episodes", type=int, default=4, help="timed CPU episodes per setting")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="CPU threads (1: comparable)")
    p.add_argument("--size", type=int, nargs=2, default=(240, 320), metavar=("H", "W"))
    p.add_argument("--skip-cpu", action="store_true")
    p.add_argument("--real-device", default="cuda", help="device of the real-size section")
    p.add_argument("--real-episodes", type=int, default=3)
    p.add_argument("--real-lora-steps", type=int, default=200)
    p.add_argument("--real-inversion-steps", type=int, default=20)
    p.add_argument("--real-frames", type=int, default=9)
    p.add_argument("--real-ttga-steps", type=int, default=100)
    args = p.parse_args()
    if not args.skip_cpu:
        cpu_section(args)
    gpu_section(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
