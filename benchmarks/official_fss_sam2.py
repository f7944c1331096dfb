"""FSS-SAM2 against the official FSSAM evaluation loop (``vs_official.py``'s ``fss_sam2`` row).

The official side is ``test.py``'s ``main`` after its model load, from a patched copy of the
checkout in ``FSSAM_OFFICIAL_DIR`` (tested at ``9318e28``; it needs ``cv2`` and ``einops``):
``OneModel`` of ``model/FSSAM.py`` loaded strictly from the weight file our side loads,
``util/dataset.py``'s ``SemData.__getitem__`` (cv2 reads, class and support choice, label
handling), ``transform_new``'s ``Resize(512)`` and ``ToTensor`` (``resized_val: True`` of the
configs), a ``DataLoader`` with ``batch_size_val: 1``, then ``validate`` itself: its warm-up
batch, then the evaluation (forward under its autocast, which the CPU disables, the
``ori_resize`` upsampling, sigmoid >= 0.5, ``intersectionAndUnionGPU``). Replaced or set,
and why (the stand-ins of the model are ``tests/methods/fssam_official_runner.py``'s, shared
with the parity test):

- Episodes: ``SemData`` draws its class and supports with Python's ``random``; a subclass
  sets, per episode, a ``random`` in ``util.dataset`` that returns the draws giving our
  episode (checked against the bounds of each call); its lists are ours (its ``__init__``
  reads list files). The rest of ``__getitem__`` is official.
- ``validate`` runs ``args.episode`` episodes only on its ``coco`` branch (``pascal`` is
  fixed at 1000), so ``data_set`` is ``coco``; that branch sizes its per-class meters for 20
  classes, so the official class mIoU is rescaled to the classes seen. It logs progress
  every ``round(episodes / 100)`` batches, a modulo by zero below 50 episodes: the module's
  ``round`` is floored at 1 (logging only).
- The warm-up call of ``validate`` restarts its loader ``ceil(1000 / (len - 1))`` times and
  takes one batch each time: one batch for a real validation list (over 1000 items), but
  hundreds of loader starts over a list of a few episodes. It gets a loader over the same
  items presented as 1001 long (indices wrap), so it costs what it costs in a real run.
- Mask check: the official rule is float32 sigmoid >= 0.5, which keeps logits down to
  about -1e-7 (their sigmoid is exactly 0.5; our adapter keeps the same rule). The logits
  of ``validate``'s forward calls are kept too, so that a mask pixel that differs only
  where the official logit is within ``NEAR_LOGIT`` (1e-4) of 0 is counted and printed
  apart instead of failing the check: both sides compute in float32 in different orders,
  and the parity test bounds their logit difference at a few 1e-7, so such a pixel may
  flip either way (seen: 2 single pixels in 58 recurring episodes, official logits
  -1.4e-7 and -8.7e-8, ours -2.2e-7 and -1.9e-7). A difference anywhere else fails.
- ``intersectionAndUnionGPU`` counts with ``torch.histc``, which on the CPU takes floating
  point only: the integer target is passed as float there (labels 0, 1 and 255, exact).
- ``get_model`` is not called (it builds an optimiser, makes folders and sleeps 5 s); the
  loader gets our run's worker count (the configs' 32 would swamp a small machine);
  ``visdom`` and ``tensorboardX`` (imported by ``test.py``, unused), ``skimage`` and
  ``sklearn`` (imported by ``util/get_weak_anns.py``, used only for box and scribble
  support labels, not on the mask path), ``seaborn`` (imported by ``util/util.py`` for its
  plots) are stubbed when absent.

Episodes (``official_episodes.py``): recurring, the ``fssam`` preset's draws (queries in
list order, supports drawn) on the synthetic benchmark; distinct, generated pairs. Images
are 512 x 512, the model's input size, so neither side resizes them (cv2's resize and ours
differ in the last bits). Both sides run SAM 2.0 at 512 and DINOv2 at 560 with the parity
test's perturbed random weights (one official-format file), in fp32: at ``--size tiny`` the
tiny models, at ``--size real`` FSSAM's own architectures (SAM 2.0 Hiera-S, DINOv2
ViT-B/14). The size decides the ratio: the caches save image encodings, which are cheap in
the tiny models (a 32-wide Hiera) while the per-episode memory path (memory encoder,
attention, decoders) keeps its real width, so the tiny ratio understates a real run's.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import types
from argparse import Namespace
from pathlib import Path

import numpy as np
import torch
from official_common import (
    NEAR_RULE,
    Comparison,
    Context,
    Side,
    import_model_libraries,
    near_threshold,
    record_logits,
    run_ours,
)
from official_episodes import EpisodeSet, distinct, pascal_view, recurring

OFFICIAL_ENV = "FSSAM_OFFICIAL_DIR"
SIZE, DINO_SIZE = 512, 560
# (SAM 2.0 variant, DINOv2 variant) per --size: the tiny test models, or FSSAM's own.
MODELS = {"tiny": ("tiny", "tiny"), "real": ("hiera_s", "vitb14")}
CPU_ONLY = ("the official FSSAM side is wired for the CPU only (its stand-ins make .cuda() a "
            "no-op; on a GPU its test.py runs under bfloat16 autocast, whose masks an fp32 run "
            "cannot match pixel for pixel)")
WARMUP_LIST = 1001  # a validation list long enough for one warm-up pass (see above)
# Logits within this of the threshold (0) may flip with float32 rounding order: 250 times
# the parity test's bound on the two sides' logit difference (3.6e-7).
RUNNER_DIR = Path(__file__).resolve().parents[1] / "tests" / "methods"
# Modules the official test.py and util/dataset.py import at the top but never call on the
# 1-shot mask path, with the names they take from them.
UNUSED_IMPORTS = {
    "visdom": ("Visdom",), "tensorboardX": ("SummaryWriter",),
    "skimage.filters": ("rank",),
    "skimage.morphology": ("dilation", "disk", "erosion", "medial_axis"),
    "sklearn.neighbors": ("radius_neighbors_graph",),
    "seaborn.distributions": ("distplot",),
}


def comparison() -> Comparison:
    return Comparison("fss_sam2", OFFICIAL_ENV, prepare, official, ours, cpu_only=CPU_ONLY)


def _runner():
    sys.path.insert(0, str(RUNNER_DIR))
    import fssam_official_runner

    return fssam_official_runner


def prepare(ctx: Context) -> None:
    """Episodes at 512 x 512, the patched checkout copy, the shared weight file and the
    draws that make ``SemData`` pick our episodes."""
    from refseg_bench.methods.fss_sam2 import store

    runner, a = _runner(), ctx.args
    sam2, dino = MODELS[a.size]
    episodes = a.slow_episodes
    if ctx.kind == "recurring":
        es = recurring(ctx.shared, a.slow_per_class, episodes, "fssam", side=SIZE)
    else:
        es = distinct(ctx.shared, a.objects or episodes, SIZE, a.seed)
    es.save(ctx.shared / "episodes.json")
    root = runner.official_copy(Path(os.environ[OFFICIAL_ENV]), ctx.shared / "official")
    job = runner.official_job(root, 1, SIZE, sam2=sam2, dino=dino)
    (ctx.shared / "official_job.json").write_text(json.dumps(job))
    store.save_checkpoint(runner.shared_weights(a.seed, SIZE, DINO_SIZE, sam2=sam2, dino=dino),
                          ctx.shared / "weights.pth", epoch=1, optimizer={})


# --- the official side ----------------------------------------------------------------------


def official(ctx: Context) -> Side:
    root = ctx.shared / "official"
    sys.path.insert(0, str(root))  # the copy's sam2, model, util and test.py come first
    import_model_libraries()  # before the stand-ins: torch._dynamo inspects sklearn's spec
    for name, attrs in UNUSED_IMPORTS.items():
        _stub_absent(name, attrs)
    runner = _runner()
    job = json.loads((ctx.shared / "official_job.json").read_text())
    es = EpisodeSet.load(ctx.shared / "episodes.json")
    view = pascal_view(es, ctx.work / "pascal")
    draws = _draws(view)
    timing, start = {}, time.perf_counter()
    runner.patch_official(job)
    model = runner.build_official(job, ctx.shared / "weights.pth")
    import test as official_test  # noqa: I001  (the copy's test.py)
    from util import dataset, transform_new
    from refseg_bench.loading import resolve_workers

    timing["build_s"] = time.perf_counter() - start
    official_test.args = Namespace(data_set="coco", batch_size_val=1, seed_deterministic=False,
                                   ori_resize=True, classes=2, ignore_label=255)
    official_test.logger = logging.getLogger("fssam-official")
    official_test.round = lambda x: max(1, round(x))  # progress logging only
    transform = transform_new.Compose([transform_new.Resize(size=SIZE),
                                       transform_new.ToTensor()])
    data = _manifest_semdata(dataset, view, draws, transform)
    loader = torch.utils.data.DataLoader(data, batch_size=1, shuffle=False,
                                         num_workers=resolve_workers("auto"),
                                         pin_memory=False, sampler=None)
    recorded, logits = _record_predictions(official_test), record_logits(model)
    t = time.perf_counter()
    warmup = torch.utils.data.DataLoader(_Wrapped(data, WARMUP_LIST), batch_size=1,
                                         shuffle=False, num_workers=loader.num_workers,
                                         pin_memory=False, sampler=None)
    official_test.validate(warmup, model, 321, len(view.episodes), warmup=True)
    timing["warmup_s"] = time.perf_counter() - t
    recorded.clear()
    logits.clear()
    t = time.perf_counter()
    _, class_miou, _ = official_test.validate(loader, model, 321, len(view.episodes))
    timing["validate_s"] = time.perf_counter() - t
    seconds = time.perf_counter() - start
    seen = len({c for _, _, c in view.episodes})
    masks = {str(i): m for i, m in enumerate(recorded)}
    return Side(seconds, 100.0 * float(class_miou) * 20 / seen, masks, timing,
                near_threshold(logits, masks, strict=False), NEAR_RULE)


def _stub_absent(name: str, attrs: tuple[str, ...]) -> None:
    """Register module ``name`` (and its parents) with ``attrs`` set to ``None`` when it
    is not installed: imported by the official modules, never called on this path."""
    import importlib.util

    top = name.partition(".")[0]
    stubbed = getattr(sys.modules.get(top), "_absent_stub", False)
    if not stubbed and importlib.util.find_spec(top) is not None:
        return
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        module = sys.modules.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
        module._absent_stub = True
    for attr in attrs:
        setattr(sys.modules[name], attr, None)


def _draws(view) -> list[list[int]]:
    """Per episode, the ``random.randint`` results ``SemData.__getitem__`` must draw to
    pick our class and support: the class's place among the query label's classes, then
    one discarded support draw (its loop starts at the query itself) and our support's
    place in the class's file list (1-based)."""
    from PIL import Image

    out = []
    classes, files = sorted({c for _, _, c in view.episodes}), _class_files(view)
    for query, supports, c in view.episodes:
        if len(supports) != 1:
            raise ValueError("the official FSSAM loop is compared at 1 shot")
        present = [v for v in np.unique(np.asarray(Image.open(view.labels / f"{query}.png")))
                   if v in classes]
        out.append([present.index(c) + 1, 1, files[c].index(supports[0]) + 1])
    return out


def _class_files(view) -> dict[int, list[str]]:
    """Each class's support list (``sub_class_file_list``): its images in the episodes."""
    files: dict[int, list[str]] = {}
    for query, supports, c in view.episodes:
        for item in (query, *supports):
            if item not in files.setdefault(c, []):
                files[c].append(item)
    return files


class _Draws:
    """``random`` for ``util.dataset``: ``randint`` returns the scripted values in order."""

    def __init__(self, values: list[int]) -> None:
        self.values = list(values)

    def randint(self, a: int, b: int) -> int:
        if not self.values:
            raise RuntimeError("SemData drew more than the scripted episode")
        v = self.values.pop(0)
        if not a <= v <= b:
            raise RuntimeError(f"scripted draw {v} outside randint({a}, {b})")
        return v


def _manifest_semdata(dataset: types.ModuleType, view, draws: list[list[int]], transform):
    """``SemData`` over our episodes: its lists are ours, its draws give our episodes."""
    images, labels = view.images, view.labels

    def pair(item: str) -> tuple[str, str]:
        return str(images / f"{item}.jpg"), str(labels / f"{item}.png")

    class ManifestSemData(dataset.SemData):
        def __init__(self) -> None:  # the official __init__ reads its own list files
            self.mode, self.shot, self.ann_type, self.transform = "val", 1, "mask", transform
            self.sub_val_list = sorted({c for _, _, c in view.episodes})
            self.sub_list = []
            self.data_list = [pair(q) for q, _, _ in view.episodes]
            self.sub_class_file_list = {c: [pair(i) for i in items]
                                        for c, items in _class_files(view).items()}

        def __getitem__(self, index):
            dataset.random = _Draws(draws[index])
            return super().__getitem__(index)

    return ManifestSemData()


class _Wrapped(torch.utils.data.Dataset):
    """``data`` presented as ``length`` items, index ``i`` being item ``i mod len(data)``."""

    def __init__(self, data, length: int) -> None:
        self.data, self.length = data, max(length, len(data))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        return self.data[index % len(self.data)]


def _record_predictions(official_test) -> list[np.ndarray]:
    """Keep every episode's thresholded prediction as ``validate`` scores it (before the
    scorer writes the ignore label into it), in order; the scoring itself is unchanged."""
    recorded: list[np.ndarray] = []
    score = official_test.intersectionAndUnionGPU

    def recording(output, target, k, ignore_index=255):
        recorded.extend(m.cpu().numpy() > 0.5 for m in output)
        if target.device.type == "cpu":  # histc on the CPU: floating point only
            target = target.float()
        return score(output, target, k, ignore_index)

    official_test.intersectionAndUnionGPU = recording
    return recorded


# --- our side ------------------------------------------------------------------------------


def ours(ctx: Context) -> Side:
    es = EpisodeSet.load(ctx.shared / "episodes.json")
    sam2, dino = MODELS[ctx.args.size]
    model = {"sam2": sam2, "sam2_version": "2.0", "sam2_checkpoint": None,
             "image_size": SIZE, "dino": dino, "dino_checkpoint": None,
             "dino_size": DINO_SIZE, "init_seed": ctx.args.seed}
    side = run_ours(ctx, ["method=fss_sam2", f"method_args.size={ctx.args.size}",
                          f"method_args.model={json.dumps(model)}",
                          f"method_args.checkpoint={ctx.shared / 'weights.pth'}",
                          *es.overrides])
    if len(side.masks) != len(es.episodes):
        raise AssertionError(f"our run scored {len(side.masks)} episodes, expected "
                             f"{len(es.episodes)}")
    return side
