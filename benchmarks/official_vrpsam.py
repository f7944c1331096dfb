"""VRP-SAM against its official evaluation loop (``vs_official.py``'s ``vrpsam`` row).

VRP-SAM has no test script: ``train.py`` validates inside training, calling its
``train(args, epoch, model, sam_model, dataloader_val, ..., training=False)`` under
``torch.no_grad()`` after every epoch. The official side here is that call, with the
checkout's own modules (``VRPSAM_OFFICIAL_DIR``, tested at ``9c53a6a``): ``VRP_encoder``
(ResNet-50 backbone), ``SAM2pred.SAM_pred`` with the checkout's modified
``segment_anything`` (its query-feature cache on disk included), ``FSSDataset``'s
transform (``Resize(img_size)``, ``ToTensor``, ``Normalize``), ``DatasetPASCAL``'s
``__getitem__`` (frame loading, label resizing, ignore index), ``Evaluator``,
``AverageMeter`` and ``train`` itself. What is assembled around them, and why:

- Episodes: a ``DatasetPASCAL`` subclass whose ``sample_episode`` returns the episodes of
  our manifest (the rest of ``__getitem__`` is official) and whose folders point at the
  generated dataset; the validation loader is ``DataLoader(batch_size=bsz, shuffle=False,
  num_workers=0, pin_memory=True)`` as ``build_dataloader`` makes it, without the
  ``DistributedSampler`` (one process: the same order).
- Models: ``VRP_encoder`` built with ``resnet50(pretrained=False)`` (its pretrained path is
  hard-coded) and loaded strictly with the encoder file our side loads; the DDP wrapper is
  a module holding it as ``.module`` (one process; no SyncBatchNorm conversion, which in
  eval mode computes the same); ``SAM_pred`` built without its ``__init__`` (a hard-coded
  ViT-H path) around the checkout's ``Sam`` in the benchmark's architecture, loaded with
  the SAM file our side loads; its feature folder (a hard-coded path) moved into the
  side's working folder.
- On the CPU, ``Tensor.cuda`` (called by ``to_cuda`` and ``AverageMeter``) is the identity.
  ``fvcore`` and ``tensorboardX``, imported but never used on this path, are stubbed when
  absent.
- Mask check: ``train`` scores ``sigmoid(low_masks) > 0.5``; the logits ``SAM_pred``
  returns are kept, so that a pixel that differs only where the official logit is within
  ``NEAR_LOGIT`` of 0 (float32 rounding in a different order) is counted apart, not failed.

Episodes (``official_episodes.py``): recurring, the ``vrp-sam`` preset's draws on the
synthetic benchmark (PASCAL-style labels: class ids, 255 band); distinct, generated pairs
copied into the PASCAL layout. Every image is ``S x S`` (``S`` = the input size), so that
neither side resizes an image: PIL's resize (official) and our antialiased float resize
differ in the last bits, which is not what this benchmark measures. Scoring is at
``S x S`` on both sides (the protocol's ``scoring.size``), as
``use_original_imgsize=False`` does.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch
from official_common import (
    NEAR_RULE,
    Comparison,
    Context,
    Side,
    near_threshold,
    record_logits,
    run_ours,
)
from official_episodes import EpisodeSet, distinct, pascal_view, recurring

OFFICIAL_ENV = "VRPSAM_OFFICIAL_DIR"


def comparison() -> Comparison:
    return Comparison("vrpsam", OFFICIAL_ENV, prepare, official, ours)


def _size(ctx: Context) -> int:
    return 512 if ctx.args.size == "real" else ctx.args.vrpsam_size


def _model(ctx: Context) -> dict:
    """Our model spec; both sides load the files written from it by ``prepare``."""
    real = ctx.args.size == "real"
    return {"sam": "vit_h" if real else "tiny256", "sam_checkpoint": str(ctx.shared / "sam.pt"),
            "sam_image_size": 1024, "backbone": "resnet50_v2", "backbone_checkpoint": None,
            "image_size": _size(ctx), "init_seed": ctx.args.seed, "prompt_scale": 1.0,
            "logit_scale": 1.0}


def _overrides(ctx: Context) -> list[str]:
    """Our run's method settings (the episodes' settings come from ``episodes.json``)."""
    return ["method=vrpsam", "method_args.size=tiny",
            f"method_args.presets={json.dumps({'tiny': {'model': _model(ctx), 'train': {}}})}",
            f"method_args.checkpoint={ctx.shared / 'vrp_encoder.pt'}"]


def prepare(ctx: Context) -> None:
    """The episodes at ``S x S`` and the weight files (random SAM and encoder, the
    backbone inside the encoder file)."""
    from refseg_bench.methods.vrpsam.build import build_net
    from refseg_bench.methods.vrpsam.settings import ModelSpec
    from refseg_bench.methods.vrpsam.store import save_encoder

    a, size = ctx.args, _size(ctx)
    scoring = (f"protocol_args.scoring.size={size}",)
    if ctx.kind == "recurring":
        es = recurring(ctx.shared, a.per_class, a.episodes, "vrp-sam", side=size, extra=scoring)
    else:
        es = distinct(ctx.shared, a.objects or a.episodes, size, a.seed, extra=scoring)
    es.save(ctx.shared / "episodes.json")
    spec = ModelSpec(**{**_model(ctx), "sam_checkpoint": None})
    net = build_net(spec, torch.device("cpu"))
    torch.save(net.sam.state_dict(), ctx.shared / "sam.pt")
    save_encoder(net.encoder, ctx.shared / "vrp_encoder.pt")


# --- the official side ----------------------------------------------------------------------


def _stubs() -> None:
    """``fvcore.nn.weight_init`` and ``tensorboardX.SummaryWriter`` are imported by the
    official modules but not used on the validation path; stand-ins when absent."""
    if importlib.util.find_spec("fvcore") is None:
        for name in ("fvcore", "fvcore.nn", "fvcore.nn.weight_init"):
            sys.modules.setdefault(name, types.ModuleType(name))
    if importlib.util.find_spec("tensorboardX") is None:
        stub = types.ModuleType("tensorboardX")
        stub.SummaryWriter = None
        sys.modules.setdefault("tensorboardX", stub)


def _load_sam2pred(root: Path, feats: Path) -> types.ModuleType:
    """``SAM2pred.py`` with its hard-coded feature folder moved to ``feats``."""
    source = (root / "SAM2pred.py").read_text()
    old = "'/root/paddlejob/workspace/env_run/vrp_sam/feats_np/coco/'"
    if old not in source:
        raise RuntimeError(f"{root / 'SAM2pred.py'} no longer holds {old}: update the replay")
    module = types.ModuleType("SAM2pred")
    module.__file__ = str(root / "SAM2pred.py")
    exec(compile(source.replace(old, repr(f"{feats}/")), module.__file__, "exec"),
         module.__dict__)
    sys.modules["SAM2pred"] = module
    return module


def _official_sam(arch: str, checkpoint: Path, device: torch.device):
    """The checkout's ``Sam`` (prompt encoder with ``protos``) in our architecture."""

    from segment_anything import modeling as m  # the checkout's copy (first on sys.path)

    from refseg_bench.models.sam import assemble_sam

    sam = assemble_sam(arch, 1024, m)
    sam.load_state_dict(torch.load(checkpoint, map_location="cpu"), strict=True)
    return sam.to(device).eval()


def official(ctx: Context) -> Side:
    root = Path(os.environ[OFFICIAL_ENV]).resolve()
    _stubs()
    sys.path[:0] = [str(root), str(root / "segment-anything")]
    if ctx.device.type == "cpu":  # the official code calls .cuda() on batches and meters
        torch.Tensor.cuda = lambda self, *a, **k: self
    feats = ctx.work / "feats_np"
    feats.mkdir()
    _load_sam2pred(root, feats)
    import train as official_train  # noqa: I001  (the checkout's train.py)
    from common.evaluation import Evaluator
    from data.dataset import FSSDataset
    from data.pascal import DatasetPASCAL
    import model.VRP_encoder as vrp

    view = pascal_view(EpisodeSet.load(ctx.shared / "episodes.json"), ctx.work / "pascal")
    args = argparse.Namespace(condition="mask", num_query=50, backbone="resnet50", seed=321,
                              use_ignore=True, benchmark="pascal", bsz=ctx.args.official_batch)
    timing, start = {}, time.perf_counter()
    resnet50 = vrp.models.resnet50
    vrp.models.resnet50 = lambda pretrained=False, **kw: resnet50(pretrained=False, **kw)
    encoder = vrp.VRP_encoder(args, args.backbone, False)
    state = torch.load(ctx.shared / "vrp_encoder.pt", map_location="cpu")
    encoder.load_state_dict({k.removeprefix("module."): v for k, v in state.items()},
                            strict=True)
    model = _DDP(encoder.to(ctx.device))
    sam_model = sys.modules["SAM2pred"].SAM_pred.__new__(sys.modules["SAM2pred"].SAM_pred)
    torch.nn.Module.__init__(sam_model)
    sam_model.sam_model = _official_sam(_model(ctx)["sam"], ctx.shared / "sam.pt", ctx.device)
    Evaluator.initialize(args)
    FSSDataset.initialize(img_size=_size(ctx), datapath=str(view.images.parent),
                          use_original_imgsize=False)
    dataset = _manifest_dataset(DatasetPASCAL, view, FSSDataset.transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.bsz, shuffle=False,
                                         pin_memory=ctx.device.type == "cuda", num_workers=0)
    timing["build_s"] = time.perf_counter() - start
    recorded = _record_predictions(Evaluator)
    logits = record_logits(sam_model)
    t = time.perf_counter()
    with torch.no_grad():
        _, miou, _ = official_train.train(args, 0, model, sam_model, loader, None, None,
                                          training=False)
    timing["validation_s"] = time.perf_counter() - t
    seconds = time.perf_counter() - start
    masks = {str(i): m for i, m in enumerate(recorded)}
    # train.py scores sigmoid(low_masks) > 0.5 at the model size (use_original_imgsize off)
    return Side(seconds, float(miou), masks, timing,
                near_threshold(logits, masks, strict=True), NEAR_RULE)


class _DDP(torch.nn.Module):
    """What ``DistributedDataParallel`` gives ``train``: ``.module`` and a forward."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args):
        return self.module(*args)


def _manifest_dataset(base: type, view, transform):
    """``DatasetPASCAL`` over our episodes (a ``PascalView``): only the sampling and the
    folders differ."""
    episodes = view.episodes

    class ManifestPASCAL(base):
        def __init__(self) -> None:  # the official __init__ reads its own list files
            self.split, self.fold, self.nfolds, self.nclass = "val", 0, 4, 20
            self.benchmark, self.shot, self.use_original_imgsize = "pascal", 1, False
            self.img_path, self.ann_path = f"{view.images}/", f"{view.labels}/"
            self.transform = transform
            self.class_ids = self.build_class_ids()
            self.img_metadata = [q for q, _, _ in episodes]  # __getitem__ takes idx mod this

        def __len__(self) -> int:
            return len(episodes)

        def sample_episode(self, idx):
            query, supports, class_id = episodes[idx]
            return query, supports, class_id - 1  # the official classes count from 0

    return ManifestPASCAL()


def _record_predictions(evaluator) -> list[np.ndarray]:
    """Keep every episode's predicted mask as ``train`` hands it to the evaluator (which
    then overwrites ignored pixels), in order; the evaluation itself is unchanged."""
    recorded: list[np.ndarray] = []
    classify = evaluator.classify_prediction

    def recording(pred_mask, batch):
        recorded.extend(m.cpu().numpy() > 0.5 for m in pred_mask)
        return classify(pred_mask, batch)

    evaluator.classify_prediction = recording
    return recorded


# --- our side ------------------------------------------------------------------------------


def ours(ctx: Context) -> Side:
    es = EpisodeSet.load(ctx.shared / "episodes.json")
    side = run_ours(ctx, [*_overrides(ctx), *es.overrides])
    if len(side.masks) != len(es.episodes):
        raise AssertionError(f"our run scored {len(side.masks)} episodes, expected "
                             f"{len(es.episodes)}")
    return side
