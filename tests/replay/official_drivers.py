"""Runs one official test loader and prints the episodes it serves as JSON (the last line of
stdout): ``python official_drivers.py LOADER CONFIG.json``.

Run by the tests in ``tests/replay`` inside a copy of an official checkout, which is the
working directory and on ``sys.path``, so the official modules import as their own scripts
import them. Everything that decides an episode is the official code: its dataset class,
torch's DataLoader (workers, samplers) and its seeding helpers; this file only builds them
as the official ``test.py`` / ``train.py`` do and mirrors their loop's stop test (cited per
function). ``official_shims`` is appended to ``sys.path`` (real packages win) for cv2 and
for modules imported but never called on these paths.
"""

from __future__ import annotations

import inspect
import json
import math
import random
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.append(str(Path(__file__).resolve().with_name("official_shims")))


def hsnet_family(cfg: dict) -> list:
    """hsnet / Matcher / PATNet ``test.py``: ``build_dataloader(benchmark, bsz, nworker, fold,
    'test', nshot)``, then ``test()`` calls ``utils.fix_randseed(0)`` and loops."""
    from common import utils
    from data.dataset import FSSDataset

    kwargs = {"img_size": 8, "datapath": cfg["datapath"]}
    if "use_original_imgsize" in inspect.signature(FSSDataset.initialize).parameters:
        kwargs["use_original_imgsize"] = False
    FSSDataset.initialize(**kwargs)
    runs = []
    for fold in cfg["folds"]:
        for shot in cfg["shots"]:
            loader = FSSDataset.build_dataloader(cfg["benchmark"], 1, 0, fold, "test", shot)
            utils.fix_randseed(cfg.get("seed", 0))
            episodes = []
            for i, batch in enumerate(loader):
                if i >= cfg["n"]:
                    break
                episodes.append([int(batch["class_id"][0]), batch["query_name"][0],
                                 [s[0] for s in batch["support_names"]]])
            runs.append({"fold": fold, "shot": shot, "episodes": episodes})
    return runs


class ToTensors:
    """A val transform that only turns arrays into tensors (the official ones resize and
    normalise; none of them draws a random number)."""

    def __call__(self, *arrays):
        return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)


def _write_bam_lists(dataset_module, cfg: dict) -> None:
    """BAM / FSSAM read ``./lists/pascal/fss_list/val/*_{split}.txt``: built here by their
    own ``make_dataset`` and written as their commented-out writer in SemData does."""
    sub_val = list(range(5 * cfg["fold"] + 1, 5 * cfg["fold"] + 6))
    data_list, sub_class = dataset_module.make_dataset(cfg["fold"], cfg["data_root"],
                                                       cfg["data_list"], sub_val, False)
    folder = Path("lists/pascal/fss_list/val")
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"data_list_{cfg['fold']}.txt", "w") as f:
        for img, label in data_list:
            f.write(img + " ")
            f.write(label + "\n")
    with open(folder / f"sub_class_file_list_{cfg['fold']}.txt", "w") as f:
        f.write(str(sub_class))


def _val_data(code: str, cfg: dict, shot: int):
    from util import dataset

    common = {"split": cfg["fold"], "shot": shot, "data_root": cfg["data_root"],
              "data_list": cfg["data_list"], "transform": ToTensors(), "mode": "val"}
    if code == "pfenet":
        return dataset.SemData(**common, use_coco=False, use_split_coco=False)
    _write_bam_lists(dataset, cfg)
    if code == "bam":
        return dataset.SemData(**common, base_data_root=cfg["base_data_root"],
                               transform_tri=ToTensors(), data_set="pascal")
    return dataset.SemData(**common, data_set="pascal", ann_type="mask")


def _seed_all(seed: int) -> None:
    """PFENet validate (fix_random_seed_val) and BAM / FSSAM ``util.setup_seed``."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def _decode(images: torch.Tensor, colours: dict) -> str:
    """The item whose constant colour fills ``images`` (H, W, 3), JPEG error tolerated."""
    rgb = images.reshape(-1, 3).float().mean(0)
    key = tuple(int(round((float(v) - 8) / 16)) for v in rgb[:2])
    return colours[f"{key[0]},{key[1]}"]


def _passes(code: str, loader, test_num: int, warmup: bool = False):
    """The loops of PFENet ``validate`` (20 passes, stop when ``(iter_num - 1) * batch >=
    test_num``) and BAM / FSSAM ``validate`` (``ceil(test_num / (len - batch))`` passes,
    stop at ``iter_num * batch >= test_num``; FSSAM's warm-up stops at ``iter_num == 1``)."""
    iter_num = 0
    passes = 20 if code == "pfenet" else math.ceil(test_num / (len(loader) - 1))
    for _ in range(passes):
        for batch in loader:
            if warmup and iter_num == 1:
                break
            stop = (iter_num - 1) >= test_num if code == "pfenet" else iter_num >= test_num
            if stop:
                break
            iter_num += 1
            yield batch


def pfenet_family(cfg: dict) -> list:
    """PFENet / BAM / FSSAM ``test.py``: the val loader (``shuffle=False``, ``batch_size_val``
    1, ``num_workers`` from the config), the seed set in ``validate``, its pass loop."""
    code, runs = cfg["code"], []
    for shot in cfg["shots"]:
        data = _val_data(code, cfg, shot)
        # PFENet passes pin_memory=True: a copying thread in the main process, no draws
        loader = torch.utils.data.DataLoader(data, batch_size=1, shuffle=False,
                                             num_workers=cfg["workers"], pin_memory=False)
        if code == "fssam":  # test.py: validate(..., 321, warmup=True) first
            _seed_all(321)
            for _ in _passes(code, loader, cfg["test_num"], warmup=True):
                pass
        _seed_all(cfg["seed"])
        sub_val = list(range(5 * cfg["fold"] + 1, 5 * cfg["fold"] + 6))
        episodes = []
        for batch in _passes(code, loader, cfg["test_num"]):
            # val items: (image, label, [label_b,] s_x, s_y, subcls, raw_label[, raw_label_b])
            bam = code == "bam"
            image, s_x, subcls = batch[0], batch[3 if bam else 2], batch[-3 if bam else -2]
            # SemData stacks supports last-first: s_x = cat([s_xs[i], s_x])
            supports = [_decode(s_x[0, k], cfg["colours"]) for k in range(shot)][::-1]
            episodes.append([sub_val[int(subcls[0][0])], _decode(image[0], cfg["colours"]),
                             supports])
        runs.append({"fold": cfg["fold"], "shot": shot, "episodes": episodes})
    return runs


def vrpsam(cfg: dict) -> list:
    """VRP-SAM ``train.py`` validation: on every rank ``utils.fix_randseed(args.seed)``, then
    the val loader of ``data/dataset.py`` (``nworker`` 0, ``DistributedSampler(shuffle=False)``,
    ``bsz`` 2). The 4 ranks are run one after the other, each with its own seeding, since
    they share no random state."""
    from common import utils
    from data.dataset import FSSDataset

    FSSDataset.initialize(img_size=8, datapath=cfg["datapath"], use_original_imgsize=False)
    runs = []
    for shot in cfg["shots"]:
        ranks = []
        for rank in range(cfg["ranks"]):
            data = FSSDataset.datasets[cfg["benchmark"]](
                FSSDataset.datapath, fold=cfg["fold"], transform=FSSDataset.transform,
                split="val", shot=shot, use_original_imgsize=False)
            sampler = torch.utils.data.distributed.DistributedSampler(
                data, num_replicas=cfg["ranks"], rank=rank, shuffle=False)
            loader = torch.utils.data.DataLoader(data, batch_size=2, shuffle=False,
                                                 num_workers=0, sampler=sampler)
            utils.fix_randseed(cfg["seed"])
            indices, episodes = list(sampler), []
            for batch in loader:
                for j in range(len(batch["query_name"])):
                    episodes.append([int(batch["class_id"][j]), batch["query_name"][j],
                                     [s[j] for s in batch["support_names"]]])
            ranks.append({"indices": indices, "episodes": episodes})
        runs.append({"fold": cfg["fold"], "shot": shot, "ranks": ranks})
    return runs


LOADERS = {"hsnet_family": hsnet_family, "pfenet_family": pfenet_family, "vrpsam": vrpsam}

if __name__ == "__main__":
    config = json.loads(Path(sys.argv[2]).read_text())
    print(json.dumps(LOADERS[sys.argv[1]](config)))
