"""The official PerSAM / PerSAM-F evaluation loop, replayed from a Personalize-SAM checkout.

``persam.py`` / ``persam_f.py`` are scripts (their loop is in ``main``), so this module
replays their top-level flow step by step with their own modules: ``SamPredictor``,
``point_selection``, ``Mask_Weights``, the two losses and ``show.py``'s drawing helpers,
loaded from the checkout in ``PERSAM_OFFICIAL_DIR`` (tested at ``a7e8724``). Per object,
as the scripts do: load SAM from the checkpoint file, encode the reference ``00`` with its
mask, build the target embedding (PerSAM-F: fit the mask weights, ``train_epoch``
iterations, each running the decoder), then for every image of the object, ``00``
included, encode, locate, decode and refine, draw the figure the script saves
(``vis_mask_NN.jpg``, timed apart) and write the mask PNG. Then ``eval_miou.py``'s
scoring reads the PNGs back (the reference image skipped).

Replaced, because they cannot run here: the hard-coded ``.cuda()`` (the chosen device),
``sam_model_registry`` (the official classes built in the benchmark's architecture, then
``load_state_dict`` from the same checkpoint file our side loads), and, when OpenCV is
not installed, ``cv2`` image I/O (Pillow, which decodes the benchmark's lossless images to
the same pixels). Nothing else is changed.
"""

from __future__ import annotations

import importlib.util
import io
import os
import sys
import time
import types
import warnings
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

OFFICIAL_ENV = "PERSAM_OFFICIAL_DIR"


def stubs() -> dict[str, types.ModuleType]:
    """Stand-ins for imports the replayed steps never call (only when really absent)."""
    out = {}
    if importlib.util.find_spec("cv2") is None:
        out["cv2"] = types.ModuleType("cv2")
    if importlib.util.find_spec("timm") is None:  # MobileSAM's encoder, never built here
        layers = types.ModuleType("timm.models.layers")
        layers.DropPath = torch.nn.Identity
        layers.to_2tuple = lambda x: (x, x)
        layers.trunc_normal_ = torch.nn.init.trunc_normal_
        registry = types.ModuleType("timm.models.registry")
        registry.register_model = lambda fn: fn
        out.update({"timm": types.ModuleType("timm"), "timm.models": types.ModuleType("m"),
                    "timm.models.layers": layers, "timm.models.registry": registry})
    return out


def load_official(root: Path) -> types.SimpleNamespace:
    """``per_segment_anything``, ``persam.py``, ``persam_f.py`` and ``show.py`` as modules
    (stubs registered and the checkout put first on ``sys.path`` for good)."""
    for name, mod in stubs().items():
        sys.modules.setdefault(name, mod)
    sys.path.insert(0, str(root))
    import matplotlib

    matplotlib.use("Agg")
    return load_scripts(root)


def load_scripts(root: Path) -> types.SimpleNamespace:
    """The two scripts as modules and ``per_segment_anything``, with the checkout already
    importable (on ``sys.path``)."""
    with warnings.catch_warnings():  # the scripts silence all warnings at import
        mods = {}
        for script in ("persam", "persam_f"):
            spec = importlib.util.spec_from_file_location(f"official_{script}",
                                                          root / f"{script}.py")
            mods[script] = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mods[script])
    import per_segment_anything

    return types.SimpleNamespace(psa=per_segment_anything, **mods)


def _read_rgb(path: Path) -> np.ndarray:
    """``cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)``, with Pillow when OpenCV is
    absent."""
    try:
        import cv2
        return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    except (ImportError, AttributeError):
        from PIL import Image

        return np.asarray(Image.open(path).convert("RGB"))


def _write_mask_png(path: Path, final_mask: np.ndarray) -> None:
    """The script's ``cv2.imwrite`` of a BGR image whose mask pixels are (0, 0, 128)."""
    colors = np.zeros((*final_mask.shape, 3), dtype=np.uint8)
    colors[final_mask, :] = np.array([[0, 0, 128]])
    try:
        import cv2
        cv2.imwrite(str(path), colors)
    except (ImportError, AttributeError):
        from PIL import Image

        Image.fromarray(colors[..., ::-1].copy()).save(path)  # BGR -> the same file pixels


def _read_gray_positive(path: Path) -> np.ndarray:
    """``eval_miou.py``: ``cv2.cvtColor(cv2.imread(p), cv2.COLOR_BGR2GRAY) > 0`` as uint8."""
    try:
        import cv2
        gray = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2GRAY)
    except (ImportError, AttributeError):
        from PIL import Image

        gray = np.asarray(Image.open(path).convert("L"))
    return np.uint8(gray > 0)


def official_sam(psa, arch: str, image_size: int, checkpoint: Path, device: torch.device):
    """What ``sam_model_registry[sam_type](checkpoint=...)`` does, in the benchmark's
    architecture: build the official classes, load the checkpoint file, move to device."""
    from refseg_bench.models.sam import assemble_sam

    sam = assemble_sam(arch, image_size, psa.modeling)
    sam.load_state_dict(torch.load(checkpoint, map_location="cpu"))
    return sam.to(device)


def _target(predictor, ref_image, ref_mask_rgb, max_mean: bool):
    """The reference stage both scripts share: ``set_image`` with the mask, the masked
    features, and the target embedding (PerSAM: mean; PerSAM-F: max/2 + mean/2)."""
    ref_mask = predictor.set_image(ref_image, ref_mask_rgb)
    ref_feat = predictor.features.squeeze().permute(1, 2, 0)
    ref_mask = F.interpolate(ref_mask, size=ref_feat.shape[0:2], mode="bilinear")
    ref_mask = ref_mask.squeeze()[0]
    target_feat = ref_feat[ref_mask > 0]
    if max_mean:
        target_feat = (torch.max(target_feat, dim=0)[0] / 2 + target_feat.mean(0) / 2)
    else:
        target_feat = target_feat.mean(0)
    return target_feat.unsqueeze(0), ref_feat


def _similarity(predictor, target_feat):
    test_feat = predictor.features.squeeze()
    c, h, w = test_feat.shape
    test_feat = test_feat / test_feat.norm(dim=0, keepdim=True)
    sim = (target_feat @ test_feat.reshape(c, h * w)).reshape(1, 1, h, w)
    sim = F.interpolate(sim, scale_factor=4, mode="bilinear")
    return predictor.model.postprocess_masks(sim, input_size=predictor.input_size,
                                             original_size=predictor.original_size).squeeze()


def _box(mask):
    y, x = np.nonzero(mask)
    return np.array([x.min(), y.min(), x.max(), y.max()])


def persam_reference(predictor, ref_image, ref_mask_rgb):
    """``persam.py``'s reference stage: (target_feat ``(1, C)`` unit norm, target_embedding
    ``(1, 1, C)``)."""
    target_embedding, _ = _target(predictor, ref_image, ref_mask_rgb, max_mean=False)
    target_feat = target_embedding / target_embedding.norm(dim=-1, keepdim=True)
    return target_feat, target_embedding.unsqueeze(0)


def persam_f_reference(off, predictor, ref_image, ref_mask_rgb, iters: int, device):
    """``persam_f.py``'s reference stage, its mask-weight training included:
    (target_feat ``(1, C)`` unit norm, weights ``(3, 1)``)."""
    gt_mask = (torch.tensor(ref_mask_rgb)[:, :, 0] > 0).float().unsqueeze(0).flatten(1)
    target_feat, ref_feat = _target(predictor, ref_image, ref_mask_rgb, max_mean=True)
    return _fit_weights(off, predictor, target_feat, ref_feat, gt_mask.to(device), iters,
                        device)


def _fit_weights(off, predictor, target_feat, ref_feat, gt_mask, iters: int, device):
    """``persam_f.py``'s training stage (its location prior on the reference, then
    ``iters`` AdamW steps, each running the decoder)."""
    h, w, c = ref_feat.shape
    target_feat = target_feat / target_feat.norm(dim=-1, keepdim=True)
    ref_feat = ref_feat / ref_feat.norm(dim=-1, keepdim=True)
    sim = (target_feat @ ref_feat.permute(2, 0, 1).reshape(c, h * w)).reshape(1, 1, h, w)
    sim = F.interpolate(sim, scale_factor=4, mode="bilinear")
    sim = predictor.model.postprocess_masks(sim, input_size=predictor.input_size,
                                            original_size=predictor.original_size).squeeze()
    topk_xy, topk_label = off.persam_f.point_selection(sim, topk=1)
    mask_weights = off.persam_f.Mask_Weights().to(device)
    mask_weights.train()
    optimizer = torch.optim.AdamW(mask_weights.parameters(), lr=1e-3, eps=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, iters)
    for train_idx in range(iters):
        _, _, _, logits_high = predictor.predict(point_coords=topk_xy, point_labels=topk_label,
                                                 multimask_output=True)
        logits_high = logits_high.flatten(1)
        weights = torch.cat((1 - mask_weights.weights.sum(0).unsqueeze(0),
                             mask_weights.weights), dim=0)
        logits_high = (logits_high * weights).sum(0).unsqueeze(0)
        dice = off.persam_f.calculate_dice_loss(logits_high, gt_mask)
        focal = off.persam_f.calculate_sigmoid_focal_loss(logits_high, gt_mask)
        loss = dice + focal
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        if train_idx % 200 == 0:  # the script's --log_epoch default
            print(f"Train Epoch: {train_idx} / {iters}")
            print(f"LR: {scheduler.get_last_lr()[0]:.6f}, Dice_Loss: {dice.item():.4f}, "
                  f"Focal_Loss: {focal.item():.4f}")
    mask_weights.eval()
    weights = torch.cat((1 - mask_weights.weights.sum(0).unsqueeze(0), mask_weights.weights),
                        dim=0)
    return target_feat, weights


def predict_persam(off, predictor, target_feat, target_embedding):
    """``persam.py``'s per-image steps after ``set_image``: returns (mask, best, points,
    labels, logits of the best mask at image size)."""
    sim = _similarity(predictor, target_feat)
    topk_xy_i, topk_label_i, last_xy_i, last_label_i = off.persam.point_selection(sim, topk=1)
    topk_xy = np.concatenate([topk_xy_i, last_xy_i], axis=0)
    topk_label = np.concatenate([topk_label_i, last_label_i], axis=0)
    sim = (sim - sim.mean()) / torch.std(sim)
    sim = F.interpolate(sim.unsqueeze(0).unsqueeze(0), size=(64, 64), mode="bilinear")
    attn_sim = sim.sigmoid_().unsqueeze(0).flatten(3)
    masks, scores, logits, _ = predictor.predict(
        point_coords=topk_xy, point_labels=topk_label, multimask_output=False,
        attn_sim=attn_sim, target_embedding=target_embedding)
    masks, scores, logits, _ = predictor.predict(
        point_coords=topk_xy, point_labels=topk_label, mask_input=logits[0:1],
        multimask_output=True)
    return (*_last_refinement(predictor, topk_xy, topk_label, masks, scores, logits),
            topk_xy, topk_label)


def predict_persam_f(off, predictor, target_feat, weights):
    """``persam_f.py``'s per-image steps after ``set_image``: returns what
    :func:`predict_persam` does."""
    weights_np = weights.detach().cpu().numpy()
    sim = _similarity(predictor, target_feat)
    topk_xy, topk_label = off.persam_f.point_selection(sim, topk=1)
    masks, scores, logits, logits_high = predictor.predict(
        point_coords=topk_xy, point_labels=topk_label, multimask_output=True)
    mask = ((logits_high * weights.unsqueeze(-1)).sum(0) > 0).detach().cpu().numpy()
    logit = (logits * weights_np[..., None]).sum(0)
    masks, scores, logits, _ = predictor.predict(
        point_coords=topk_xy, point_labels=topk_label, box=_box(mask)[None],
        mask_input=logit[None, :, :], multimask_output=True)
    return (*_last_refinement(predictor, topk_xy, topk_label, masks, scores, logits),
            topk_xy, topk_label)


def _last_refinement(predictor, topk_xy, topk_label, masks, scores, logits):
    """The step both scripts end with: the best mask's box and logits prompt one more
    multimask decode; returns (mask, best index, its logits at image size)."""
    best = np.argmax(scores)
    masks, scores, logits, high = predictor.predict(
        point_coords=topk_xy, point_labels=topk_label, box=_box(masks[best])[None],
        mask_input=logits[best:best + 1], multimask_output=True)
    best = int(np.argmax(scores))
    return masks[best], best, high[best]


def _figure(off, image, mask, points, labels, best: int, path: Path) -> None:
    import matplotlib.pyplot as plt

    plt.figure(figsize=(10, 10))
    plt.imshow(image)
    off.show_mask(mask, plt.gca())
    off.show_points(points, labels, plt.gca())
    plt.title(f"Mask {best}", fontsize=18)
    plt.axis("off")
    with open(path, "wb") as outfile:
        plt.savefig(outfile, format="jpg")
    # The script never closes its figures; closing them keeps memory flat and only helps it.
    plt.close("all")


def run_official(variant: str, data: Path, checkpoint: Path, out: Path, *, arch: str,
                 image_size: int, device: torch.device, train_iters: int = 1000,
                 figures: bool = True) -> dict:
    """Run the ``persam`` or ``persam_f`` loop over every object of ``data`` (PerSeg layout)
    and ``eval_miou.py``; returns timings (s), the mIoU and where the masks are."""
    off = load_official(Path(os.environ[OFFICIAL_ENV]).resolve())
    show = sys.modules.get("show")
    off.show_mask, off.show_points = show.show_mask, show.show_points
    timing = {"load_sam_s": 0.0, "figure_s": 0.0}
    run = types.SimpleNamespace(off=off, variant=variant, data=data, checkpoint=checkpoint,
                                arch=arch, image_size=image_size, device=device,
                                train_iters=train_iters, figures=figures, timing=timing)
    start = time.perf_counter()
    log = io.StringIO()  # the scripts print progress; keep it off the benchmark's table
    with redirect_stdout(log), torch.set_grad_enabled(True):
        for obj in os.listdir(data / "Images"):
            if ".DS" not in obj:
                _one_object(run, obj, out / obj)
    timing["predict_loop_s"] = time.perf_counter() - start
    t = time.perf_counter()
    miou = eval_miou(out, data / "Annotations")
    timing["eval_s"] = time.perf_counter() - t
    timing["total_s"] = timing["predict_loop_s"] + timing["eval_s"]
    return {"timing": timing, "miou": miou, "masks_dir": str(out)}


def _one_object(run, obj: str, obj_out: Path) -> None:
    """``persam()`` / ``persam_f()`` of the scripts for one object."""
    off, device = run.off, run.device
    images = run.data / "Images" / obj
    obj_out.mkdir(parents=True, exist_ok=True)
    ref_image = _read_rgb(images / "00.jpg")
    ref_mask = _read_rgb(run.data / "Annotations" / obj / "00.png")
    t = time.perf_counter()
    sam = official_sam(off.psa, run.arch, run.image_size, run.checkpoint, device)
    if run.variant == "persam_f":
        for param in sam.parameters():
            param.requires_grad = False
    run.timing["load_sam_s"] += time.perf_counter() - t
    predictor = off.psa.SamPredictor(sam)
    if run.variant == "persam":
        target_feat, target_embedding = persam_reference(predictor, ref_image, ref_mask)
    else:
        target_feat, weights = persam_f_reference(off, predictor, ref_image, ref_mask,
                                                  run.train_iters, device)
    for test_idx in range(len(os.listdir(images))):
        name = f"{test_idx:02d}"
        test_image = _read_rgb(images / f"{name}.jpg")
        predictor.set_image(test_image)
        if run.variant == "persam":
            mask, best, _, points, labels = predict_persam(off, predictor, target_feat,
                                                           target_embedding)
        else:
            mask, best, _, points, labels = predict_persam_f(off, predictor, target_feat,
                                                             weights)
        if run.figures:
            t = time.perf_counter()
            _figure(off, test_image, mask, points, labels, best, obj_out / f"vis_mask_{name}.jpg")
            run.timing["figure_s"] += time.perf_counter() - t
        _write_mask_png(obj_out / f"{name}.png", mask)


def eval_miou(pred_root: Path, gt_root: Path, ref_idx: str = "00") -> float:
    """``eval_miou.py``: per object, summed intersection over summed union of its images
    (the reference skipped by the script's substring test, applied here to the path below
    ``gt_root`` as the script sees ``./data/Annotations/...``), averaged over objects."""
    ious = []
    for obj in sorted(n for n in os.listdir(gt_root) if ".DS" not in n):
        gts = sorted(str(p) for p in Path(gt_root, obj).rglob("*.png"))
        preds = sorted(str(p) for p in Path(pred_root, obj).rglob("*.png"))
        inter = union = 0
        for gt_path, pred_path in zip(gts, preds, strict=False):
            if ref_idx in os.path.relpath(gt_path, gt_root):
                continue
            gt, pred = _read_gray_positive(gt_path), _read_gray_positive(pred_path)
            inter += np.logical_and(pred, gt).sum()
            union += np.logical_or(pred, gt).sum()
        ious.append(inter / (union + 1e-10))
    return 100.0 * float(np.mean(ious))
