"""Matcher against its official evaluation loop (``vs_official.py``'s ``matcher`` row).

The official side is ``run`` of ``tests/methods/matcher_official.py`` (shared with the
parity test and ``perf_matcher.py``; it needs ``cv2``): a copy of the checkout in
``MATCHER_OFFICIAL_DIR`` with ``np.int`` replaced, ``main_oss.py``'s own argument parser fed
the flags of ``scripts/fss.sh``, ``build_matcher_oss`` with our weights under the official
key names, the official transforms, a ``DataLoader``, ``main_oss.py``'s seeds, and per
episode ``set_reference`` / ``set_target`` / ``predict`` / ``clear`` in order. It is timed
from ``build_matcher_oss`` to the last mask. Its episodes arrive as arrays our loader
decoded from the same files, so its image reading (milliseconds against seconds of work per
episode) is left out of its time: that favours the official side.

``fss`` is FSS-1000's script, which our ``setting: auto`` picks for these datasets; COCO's
script (a 64 x 64 dense grid) costs the official code minutes per episode on a CPU.
Weights: the tiny preset's random SAM (calibrated) and DINOv2 from ``init_seed`` 1 (seed
0's single-mask proposals all coincide: one EMD per episode), or at ``--size real`` SAM
ViT-H and DINOv2 ViT-L/14 with random calibrated weights. With ``--threads N`` our EMD
pool (``emd_workers``) gets N threads too.

Episodes (``official_episodes.py``): recurring, the ``matcher`` preset's draws on the
synthetic benchmark; distinct, generated pairs. Images are 518 x 518, Matcher's input and
scoring size, so that our output (resized back to the query's size) is the 518 mask itself.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from official_common import Comparison, Context, Side, run_ours
from official_episodes import EpisodeSet, distinct, loaded, recurring

SIZE = 518
SETTING = "fss"
RUNNER_DIR = Path(__file__).resolve().parents[1] / "tests" / "methods"


def comparison() -> Comparison:
    return Comparison("matcher", "MATCHER_OFFICIAL_DIR", prepare, official, ours)


def _driver():
    sys.path.insert(0, str(RUNNER_DIR))
    import matcher_official

    return matcher_official


def _options(ctx: Context) -> dict:
    """Our method options (the official job is built from a method made with them)."""
    if ctx.args.size == "tiny":
        return {"size": "tiny", "model": {"init_seed": 1}}
    return {"size": "real", "model": {"sam_checkpoint": None, "dinov2_checkpoint": None,
                                      "sam_logit_scale": 400.0, "sam_iou_offset": 0.85}}


def prepare(ctx: Context) -> None:
    """Episodes at 518 x 518 and the official job: our method's weights and every episode
    as our loader hands it to our method; the query labels for the official mIoU."""
    from refseg_bench.methods.matcher.adapter import Matcher

    a = ctx.args
    if ctx.kind == "recurring":
        es = recurring(ctx.shared, a.slow_per_class, a.slow_episodes, "matcher", side=SIZE)
    else:
        es = distinct(ctx.shared, a.objects or a.slow_episodes, SIZE, a.seed,
                      extra=(f"protocol_args.scoring.size={SIZE}",))
    es.save(ctx.shared / "episodes.json")
    method = Matcher(setting=SETTING, **_options(ctx))
    method.setup(torch.device("cpu"))
    items = list(loaded(es))
    job = _driver().job_for(method, SETTING, [le.episode for le in items])
    torch.save(job, ctx.shared / "job.pt")
    torch.save({"labels": [torch.from_numpy(le.label) for le in items],
                "classes": [le.spec.class_id for le in items]}, ctx.shared / "labels.pt")


def official(ctx: Context) -> Side:
    driver = _driver()
    job = torch.load(ctx.shared / "job.pt", weights_only=True)
    job["device"] = str(ctx.device)
    t = time.perf_counter()
    out = driver.run(job, Path(os.environ[driver.OFFICIAL_ENV]))
    copy_s = time.perf_counter() - t - out["total_seconds"]
    masks = {str(i): m.numpy() for i, m in enumerate(out["masks"])}
    truth = torch.load(ctx.shared / "labels.pt", weights_only=True)
    return Side(out["total_seconds"], _miou(masks, truth), masks,
                {"loop_s": float(sum(out["seconds"])), "copy_and_imports_s (untimed)": copy_s})


def _miou(masks: dict[str, np.ndarray], truth: dict) -> float:
    """Class mIoU (percent) of the official masks against our labels, 255 ignored, over the
    classes seen, for the table (the official script prints its own). Our side averages
    over all the fold's classes, an unseen one counting 0 (HSNet's evaluator), so the two
    agree once every class of the fold has an episode."""
    inter: dict[int, int] = {}
    union: dict[int, int] = {}
    for i, (label, c) in enumerate(zip(truth["labels"], truth["classes"], strict=True)):
        label, pred = label.numpy(), masks[str(i)]
        valid, gt = label != 255, label == 1
        inter[c] = inter.get(c, 0) + int((pred & gt & valid).sum())
        union[c] = union.get(c, 0) + int(((pred | gt) & valid).sum())
    return 100.0 * float(np.mean([inter[c] / max(union[c], 1) for c in inter]))


def ours(ctx: Context) -> Side:
    es = EpisodeSet.load(ctx.shared / "episodes.json")
    threads = [f"method_args.emd_workers={ctx.args.threads}"] if ctx.args.threads else []
    side = run_ours(ctx, ["method=matcher", f"method_args.setting={SETTING}",
                          *[f"method_args.{k}={json.dumps(v)}" for k, v in
                            _options(ctx).items()], *threads, *es.overrides])
    if len(side.masks) != len(es.episodes):
        raise AssertionError(f"our run scored {len(side.masks)} episodes, expected "
                             f"{len(es.episodes)}")
    return side
