"""The pseudo video through SAM 2's video predictor: prompts and propagation.

Frames are handed to SAM 2 in memory (:func:`refseg_bench.models.sam2_models.
init_video_state`) at the target's original size, so the target's mask comes back at the
query's size. Frame 0 (the reference) is prompted with the reference annotation: the mask
itself (``reference_prompt: mask``) or its tight box for mask references, the annotation's
box for box references, its points for point references and the stroke points for
scribbles. Box corners use the last foreground pixel (our boxes' maxima are exclusive);
coordinates are rescaled between sizes by pixel centres.
"""

from __future__ import annotations

from contextlib import contextmanager
from unittest import mock

import numpy as np
import torch

from refseg_bench.episodes import Annotation
from refseg_bench.models.sam2_models import init_video_state

OBJ = 1  # the one object id of every pseudo video


@contextmanager
def quiet_progress():
    """sam2 1.1.0's ``propagate_in_video`` always draws a tqdm bar; replace it by a plain
    iteration while we propagate (a run shows its own progress)."""
    import sam2.sam2_video_predictor as vp

    with mock.patch.object(vp, "tqdm", lambda iterable, **_: iterable):
        yield


def rescale_xy(xy: np.ndarray, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> np.ndarray:
    """(N, 2) pixel coordinates (x, y) on an image of ``from_hw`` mapped to ``to_hw``,
    pixel centre to pixel centre."""
    scale = np.array([to_hw[1] / from_hw[1], to_hw[0] / from_hw[0]])
    return ((np.asarray(xy, np.float64) + 0.5) * scale - 0.5).astype(np.float32)


def annotation_box(annotation: Annotation) -> np.ndarray:
    """(4,) XYXY box over every box of the annotation, maxima on the last pixel."""
    boxes = np.asarray(annotation.boxes, np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        raise ValueError(f"a {annotation.kind} annotation carries no box geometry (boxes is "
                         "empty); cannot prompt SAM 2 with a box")
    x1, y1 = boxes[:, 0].min(), boxes[:, 1].min()
    x2, y2 = boxes[:, 2].max() - 1, boxes[:, 3].max() - 1
    return np.array([x1, y1, max(x1, x2), max(y1, y2)])


def geometry_prompt(annotation: Annotation, from_hw, to_hw, use_box: bool) -> dict:
    """Keyword arguments of ``add_new_points_or_box`` for the annotation's geometry on a
    frame of ``to_hw`` (the annotation lives on an image of ``from_hw``)."""
    if use_box or annotation.kind == "box":
        corners = annotation_box(annotation).reshape(2, 2)
        return {"box": rescale_xy(corners, from_hw, to_hw).reshape(4)}
    if len(annotation.points) == 0:
        raise ValueError(f"a {annotation.kind} annotation carries no point geometry (points "
                         "is empty); cannot prompt SAM 2")
    return {"points": rescale_xy(annotation.points, from_hw, to_hw),
            "labels": np.asarray(annotation.point_labels, np.int32)}


def prompt_reference(predictor, state: dict, annotation: Annotation, from_hw,
                     reference_prompt: str) -> None:
    """Prompt frame 0 of ``state`` with the reference annotation."""
    if annotation.kind == "mask" and reference_prompt == "mask":
        predictor.add_new_mask(state, frame_idx=0, obj_id=OBJ,
                               mask=np.asarray(annotation.raster, bool))
        return
    to_hw = (state["video_height"], state["video_width"])
    predictor.add_new_points_or_box(state, frame_idx=0, obj_id=OBJ,
                                    **geometry_prompt(annotation, from_hw, to_hw,
                                                      use_box=annotation.kind == "mask"))


def reference_mask(predictor, image: np.ndarray, annotation: Annotation) -> np.ndarray:
    """SAM 2's frame-0 mask (H, W) bool of the reference ``image`` prompted with the
    annotation's geometry (weak references carry no label)."""
    state = init_video_state(predictor, [image])
    hw = image.shape[:2]
    _, _, logits = predictor.add_new_points_or_box(
        state, frame_idx=0, obj_id=OBJ, **geometry_prompt(annotation, hw, hw, use_box=False))
    return (logits[0, 0] > 0).cpu().numpy()


def grid_box(mask: torch.Tensor, to_hw: tuple[int, int]) -> np.ndarray | None:
    """XYXY box (last-pixel maxima) on a frame of ``to_hw`` covering the cells of ``mask``
    (h, w) bool; None when it is empty."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    if len(ys) == 0:
        return None
    h, w = mask.shape
    sy, sx = to_hw[0] / h, to_hw[1] / w
    return np.array([int(xs.min()) * sx, int(ys.min()) * sy,
                     (int(xs.max()) + 1) * sx - 1, (int(ys.max()) + 1) * sy - 1], np.float32)


def prompt_frames(predictor, state: dict, masks: dict[int, torch.Tensor], kind: str) -> int:
    """Prompt frame ``i`` with ``masks[i]`` (a coarse bool mask) as a mask or as its box;
    empty masks give no prompt. Returns how many frames were prompted."""
    to_hw = (state["video_height"], state["video_width"])
    done = 0
    for idx, mask in masks.items():
        if not mask.any():
            continue
        if kind == "mask":
            predictor.add_new_mask(state, frame_idx=idx, obj_id=OBJ, mask=mask.cpu())
        else:
            predictor.add_new_points_or_box(state, frame_idx=idx, obj_id=OBJ,
                                            box=grid_box(mask, to_hw))
        done += 1
    return done


def last_frame_probability(predictor, state: dict) -> torch.Tensor:
    """Propagate through the whole video; the last frame's foreground probability (H, W)."""
    last = None
    with quiet_progress():
        for idx, _, logits in predictor.propagate_in_video(state):
            if idx == state["num_frames"] - 1:
                last = logits[0, 0]
    if last is None:
        raise RuntimeError("SAM 2 propagation did not reach the target frame")
    return torch.sigmoid(last.float())
