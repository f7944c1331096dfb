"""Run the official Matcher (github.com/aim-uofa/Matcher, tested at ``d59b6c7``) on saved
episodes, in a process of its own: ``python matcher_official.py JOB.pt OUT.pt``.

Used by the parity test and by ``benchmarks/perf_matcher.py``. The official checkout is
read from ``MATCHER_OFFICIAL_DIR`` and copied to a temporary folder first, with the one
change NumPy >= 1.24 needs (``np.int`` -> ``int`` in ``matcher/Matcher.py``); nothing else
is edited. A process of its own keeps the official ``segment_anything`` copy apart from
the installed one and gives the official code the global RNGs it expects.

What runs is the official code path of ``main_oss.py``: its argument parser (taken from
``main_oss.py`` itself) fed the flags of ``scripts/<setting>.sh``, ``build_matcher_oss``
(with two extra registry entries so that it builds the tiny test architectures and loads
our random weights from files, under the official key names), the official transforms
(PIL resize to 518, ``ToTensor``; masks nearest-resized), a ``DataLoader`` (whose start
draws once from torch's RNG, as in the real run), ``random.seed(0)`` then
``fix_randseed(0)``, and ``set_reference`` / ``set_target`` / ``predict`` / ``clear`` per
episode, in order.

Modules the official code imports but these steps never use are stubbed when absent:
``sklearn`` (``matcher/k_means.py`` imports ``make_blobs`` at import time). ``cv2`` is
used (``cv2.resize(..., INTER_AREA)`` of each proposal to 37 x 37): install
``opencv-python-headless`` to run it; without it the job stops with that message.

JOB (``torch.save``): ``setting`` (script name, e.g. ``"coco"``, ``"fss_5shot"``),
``sam`` {``state_dict``, ``spec`` (SamSpec fields), ``image_size``}, ``dinov2``
{``state_dict``, ``spec`` (VitSpec fields)}, ``episodes``: list of {``query`` (H, W, 3)
uint8, ``supports``: list of (h, w, 3) uint8, ``masks``: list of (h, w) bool}.
``device`` (optional, default ``"cpu"``); ``extra_flags`` (optional): more ``main_oss.py``
flags after the script's.
OUT: ``masks`` list of (518, 518) bool tensors, ``seconds`` per episode, ``total_seconds``
(from ``build_matcher_oss`` to the last mask: the whole official loop), ``args`` (the
parsed official arguments).
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import os
import random
import shlex
import shutil
import sys
import tempfile
import time
import types
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

OFFICIAL_ENV = "MATCHER_OFFICIAL_DIR"
COPIED = ("matcher", "segment_anything", "dinov2", "scripts", "main_oss.py")


def patched_copy(src: Path, dst: Path) -> None:
    """The parts of the checkout the run needs, with ``np.int`` replaced."""
    for name in COPIED:
        s = src / name
        (shutil.copytree if s.is_dir() else shutil.copy)(s, dst / name)
    path = dst / "matcher" / "Matcher.py"
    text = path.read_text()
    if "astype(np.int)" not in text:
        raise RuntimeError(f"{path}: expected the `astype(np.int)` line of commit d59b6c7")
    path.write_text(text.replace("astype(np.int)", "astype(int)"))


def official_args(root: Path, setting: str, extra: tuple[str, ...] = ()) -> argparse.Namespace:
    """``main_oss.py``'s own parser, parsing the flags of ``scripts/<setting>.sh`` followed
    by ``extra`` flags (a test's deliberate change, e.g. a smaller dense grid)."""
    source = (root / "main_oss.py").read_text()
    start = source.index("    parser = argparse.ArgumentParser(")
    end = source.index("    args = parser.parse_args()")
    body = "\n".join(line[4:] for line in source[start:end].splitlines())
    scope: dict = {"argparse": argparse}
    exec(body, scope)  # noqa: S102  (the official parser definition, verbatim)
    script = (root / "scripts" / f"{setting}.sh").read_text().replace("\\\n", " ")
    command = next(line for line in script.splitlines() if "main_oss.py" in line)
    words = shlex.split(command.split("main_oss.py", 1)[1])
    flags, skip = [], False
    for word in words:  # drop the loop-dependent --fold and --log-root
        if skip:
            skip = False
            continue
        if word in ("--fold", "--log-root"):
            skip = True
            continue
        flags.append(word)
    args = scope["parser"].parse_args(flags + list(extra))
    args.sample_range = ast.literal_eval(args.sample_range)  # main_oss uses eval()
    return args


def _stubs() -> None:
    if importlib.util.find_spec("sklearn") is None:
        from importlib.machinery import ModuleSpec

        for name in ("sklearn", "sklearn.datasets"):
            module = types.ModuleType(name)
            module.__spec__ = ModuleSpec(name, None)  # torch's import scans need a spec
            sys.modules[name] = module
        sys.modules["sklearn.datasets"].make_blobs = None
    if importlib.util.find_spec("cv2") is None:
        raise SystemExit("the official Matcher needs cv2 (cv2.resize of every proposal): "
                         "pip install opencv-python-headless")


def register_tiny(job: dict, workdir: Path) -> tuple[str, str]:
    """Registry entries that build the job's architectures with the official classes and
    load its state dicts from files; returns (dinov2 name, sam name)."""
    from dinov2.layers import MemEffAttention
    from dinov2.layers import NestedTensorBlock as Block
    from dinov2.models import vision_transformer as vits
    from segment_anything import modeling, sam_model_registry

    d = job["dinov2"]["spec"]

    def dinov2_test(**kwargs):
        kwargs["img_size"] = d["img_size"]  # stored position grid of the test weights
        return vits.DinoVisionTransformer(
            embed_dim=d["embed_dim"], depth=d["depth"], num_heads=d["heads"], mlp_ratio=4,
            block_fn=partial(Block, attn_class=MemEffAttention), **kwargs)

    vits.__dict__["vit_parity"] = dinov2_test
    s, size = job["sam"]["spec"], job["sam"]["image_size"]

    def sam_test(checkpoint=None):
        grid = size // 16
        sam = modeling.Sam(
            image_encoder=modeling.ImageEncoderViT(
                depth=s["encoder_depth"], embed_dim=s["encoder_dim"], img_size=size,
                mlp_ratio=4, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
                num_heads=s["encoder_heads"], patch_size=16, qkv_bias=True, use_rel_pos=True,
                global_attn_indexes=tuple(s["global_attn"]), window_size=14,
                out_chans=s["prompt_dim"]),
            prompt_encoder=modeling.PromptEncoder(
                embed_dim=s["prompt_dim"], image_embedding_size=(grid, grid),
                input_image_size=(size, size), mask_in_chans=s["mask_in_chans"]),
            mask_decoder=modeling.MaskDecoder(
                num_multimask_outputs=3,
                transformer=modeling.TwoWayTransformer(
                    depth=2, embedding_dim=s["prompt_dim"], mlp_dim=s["decoder_mlp_dim"],
                    num_heads=s["decoder_heads"]),
                transformer_dim=s["prompt_dim"], iou_head_depth=3,
                iou_head_hidden_dim=s["iou_hidden_dim"]),
            pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375])
        sam.eval()
        sam.load_state_dict(torch.load(checkpoint, weights_only=True), strict=True)
        return sam

    sam_model_registry["sam_parity"] = sam_test  # the dict Matcher.py imported
    torch.save(job["dinov2"]["state_dict"], workdir / "dinov2.pth")
    torch.save(job["sam"]["state_dict"], workdir / "sam.pth")
    return "vit_parity", "sam_parity"


class Episodes(torch.utils.data.Dataset):
    """The job's episodes through the official transforms (as ``matcher/data/fss.py``)."""

    def __init__(self, episodes: list[dict], img_size: int) -> None:
        from PIL import Image
        from torchvision import transforms

        self.episodes, self.image = episodes, Image
        self.transform = transforms.Compose([transforms.Resize(size=(img_size, img_size)),
                                             transforms.ToTensor()])

    def __len__(self) -> int:
        return len(self.episodes)

    def __getitem__(self, idx: int) -> dict:
        ep = self.episodes[idx]
        query = self.transform(self.image.fromarray(np.asarray(ep["query"])))
        supports = torch.stack([self.transform(self.image.fromarray(np.asarray(s)))
                                for s in ep["supports"]])
        masks = torch.stack([
            F.interpolate(torch.as_tensor(m)[None, None].float(), supports.shape[-2:],
                          mode="nearest").squeeze() for m in ep["masks"]])
        return {"query_img": query, "support_imgs": supports, "support_masks": masks}


def run(job: dict, official_dir: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="matcher-official-") as tmp:
        root = Path(tmp)
        patched_copy(official_dir, root)
        _stubs()
        sys.path.insert(0, str(root))
        from matcher.common import utils
        from matcher.Matcher import build_matcher_oss

        args = official_args(root, job["setting"], tuple(job.get("extra_flags", ())))
        args.dinov2_size, args.sam_size = register_tiny(job, root)
        args.dinov2_weights, args.sam_weights = str(root / "dinov2.pth"), str(root / "sam.pth")
        args.device = torch.device(job.get("device", "cpu"))
        started = time.perf_counter()
        matcher = build_matcher_oss(args)
        loader = torch.utils.data.DataLoader(Episodes(job["episodes"], args.img_size),
                                             batch_size=1, shuffle=False, num_workers=0)
        random.seed(0)  # main_oss.py, at import
        utils.fix_randseed(0)  # main_oss.py test()
        masks, seconds = [], []
        with torch.no_grad():
            for batch in loader:
                batch = {k: v.to(args.device) for k, v in batch.items()}  # utils.to_cuda
                if args.device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                matcher.set_reference(batch["support_imgs"], batch["support_masks"])
                matcher.set_target(batch["query_img"])
                pred = matcher.predict()
                matcher.clear()
                if args.device.type == "cuda":
                    torch.cuda.synchronize()
                seconds.append(time.perf_counter() - start)
                masks.append(pred[0].bool().cpu())
        plain = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()
                 if isinstance(v, (int, float, str, bool, tuple))}
        return {"masks": masks, "seconds": seconds, "args": plain,
                "total_seconds": time.perf_counter() - started}


def main() -> None:
    job_path, out_path = sys.argv[1:3]
    official = os.environ.get(OFFICIAL_ENV)
    if not official or not (Path(official) / "matcher" / "Matcher.py").is_file():
        raise SystemExit(f"set {OFFICIAL_ENV} to a checkout of github.com/aim-uofa/Matcher")
    torch.set_num_threads(int(os.environ.get("MATCHER_THREADS", torch.get_num_threads())))
    job = torch.load(job_path, weights_only=True)
    torch.save(run(job, Path(official)), out_path)


if __name__ == "__main__":
    main()


def launch(job: dict, workdir: Path, extra_env: dict | None = None) -> dict:
    """Save ``job``, run this file on it in a child process, return its output."""
    import subprocess

    job_path, out_path = workdir / "job.pt", workdir / "out.pt"
    torch.save(job, job_path)
    env = {**os.environ, **(extra_env or {})}
    proc = subprocess.run([sys.executable, __file__, str(job_path), str(out_path)], env=env,
                          capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"official Matcher run failed ({proc.returncode}):\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return torch.load(out_path, weights_only=True)



# --- jobs from our side ------------------------------------------------------------------


def scene(h: int, w: int, rng: np.random.Generator, area: float = 0.06):
    """``(h, w, 3)`` uint8 noisy image with one bright ellipse of about ``area`` of the
    image, and its ``(h, w)`` bool mask."""
    yy, xx = np.mgrid[:h, :w]
    cy, cx = rng.uniform(0.3, 0.7, 2) * (h, w)
    ry, rx = np.sqrt(area / np.pi) * np.array([h, w]) * rng.uniform(0.8, 1.25, 2)
    mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
    img = rng.integers(0, 100, (h, w, 3)).astype(np.uint8)
    img[mask] = rng.integers(150, 255, (int(mask.sum()), 3)).astype(np.uint8)
    return img, mask


def make_episodes(n: int, shot: int, seed: int):
    """``n`` mask-reference episodes (``refseg_bench.episodes.Episode``) of generated scenes
    between 200 and 420 pixels a side, indices 0..n-1."""
    from refseg_bench.episodes import Annotation, Episode, EpisodeSpec

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        views = [scene(int(rng.integers(200, 420)), int(rng.integers(200, 420)), rng)
                 for _ in range(shot + 1)]
        (query, _), refs = views[0], views[1:]
        spec = EpisodeSpec(i, 0, 1, f"q{i}", tuple(f"s{i}_{j}" for j in range(shot)), i)
        out.append(Episode(spec, "blob", query, [im for im, _ in refs],
                           [Annotation("mask", raster=m) for _, m in refs],
                           [m.astype(np.uint8) for _, m in refs]))
    return out


def job_for(method, setting: str, episodes, extra_flags: tuple[str, ...] = ()) -> dict:
    """A job running the official code with ``method``'s SAM and DINOv2 weights (a set-up
    ``refseg_bench.methods.matcher.adapter.Matcher`` with the tiny architectures)."""
    import dataclasses

    from refseg_bench.models.dinov2 import DINOV2_SPECS
    from refseg_bench.models.sam import SAM_SPECS

    spec = method.spec
    return {
        "setting": setting, "extra_flags": list(extra_flags),
        "sam": {"state_dict": method.sam.state_dict(), "image_size": spec.sam_image_size,
                "spec": dataclasses.asdict(SAM_SPECS[spec.sam])},
        "dinov2": {"state_dict": method.dinov2.state_dict(),
                   "spec": dataclasses.asdict(DINOV2_SPECS[spec.dinov2])},
        "episodes": [{"query": torch.from_numpy(e.query_image),
                      "supports": [torch.from_numpy(s) for s in e.support_images],
                      "masks": [torch.from_numpy(np.asarray(a.raster)) for a in e.annotations]}
                     for e in episodes],
    }
