"""The evaluation loop: manifest -> loader -> method.predict -> scorer -> run record.

``run(cfg)`` plans the units (one per seed x fold), evaluates each, and writes the
summary. Reporting lives in ``summary.py``; the loop itself stays small.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from refseg_bench import hostmem, records
from refseg_bench.config import build_dataset, build_method, folds_of
from refseg_bench.datasets.base import FoldedDataset
from refseg_bench.devices import resolve_device
from refseg_bench.distributed import World, init_world, local_device, shutdown
from refseg_bench.episodes import EpisodeBatch
from refseg_bench.errors import RunInterrupted
from refseg_bench.loading import LoadedEpisode, episode_loader, resolve_workers
from refseg_bench.methods.base import Unit
from refseg_bench.protocols import Protocol, resolve_protocol
from refseg_bench.registry import DATASETS
from refseg_bench.rundir import RunLock, run_path
from refseg_bench.sampler import Manifest, SamplingError, sample_episodes
from refseg_bench.scorer import Scorer


@dataclass
class RunPlan:
    cfg: DictConfig
    dataset: FoldedDataset
    protocol: Protocol
    seeds: list[int]
    folds: list[int]
    n_episodes: int
    run_dir: Path


@dataclass
class Timing:
    """Seconds spent per stage; ``predict`` is the method, the rest is harness overhead."""

    data: float = 0.0
    predict: float = 0.0
    score: float = 0.0
    write: float = 0.0
    episodes: int = 0
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        total = self.data + self.predict + self.score + self.write
        return {"data_s": self.data, "predict_s": self.predict, "score_s": self.score,
                "write_s": self.write, "episodes": self.episodes,
                "overhead_fraction": (total - self.predict) / total if total else None}


def plan_run(cfg: DictConfig) -> RunPlan:
    dataset_cls = DATASETS.get(cfg.dataset)
    name = cfg.protocol or dataset_cls.default_protocol
    cfg.split = cfg.split or dataset_cls.default_split  # recorded like the protocol
    protocol = resolve_protocol(name, cfg.dataset,
                                OmegaConf.to_container(cfg.protocol_args, resolve=True))
    dataset = build_dataset(cfg, protocol.dataset_args)
    if cfg.seed is not None:
        seeds = [int(cfg.seed)]
    else:
        seeds = list(protocol.seeds) or [protocol.seed]
    n = int(cfg.episodes) if cfg.episodes is not None else protocol.episodes
    cfg.protocol = name  # recorded: the run id and the saved config name the protocol used
    cfg.num_workers = resolve_workers(cfg.num_workers)  # recorded as the count used
    run_id = cfg.run_id or records.default_run_id(cfg, name)
    run_dir = run_path(cfg.results_dir, run_id)
    return RunPlan(cfg, dataset, protocol, seeds, folds_of(cfg, dataset.n_folds), n, run_dir)


def unit_manifest(plan: RunPlan, seed: int, fold: int, world: World) -> Manifest:
    """Sample the unit's episodes; write the manifest once, or check the stored one."""
    cfg = plan.cfg
    fresh = sample_episodes(plan.dataset, fold, cfg.split, int(cfg.shot), plan.n_episodes,
                            seed, plan.protocol)
    path = plan.run_dir / records.unit_name(seed, fold) / "manifest.json"
    if path.exists():
        stored = Manifest.read(path)
        if stored.sha256 != fresh.sha256:
            raise SamplingError(
                f"{path} differs from the episodes the dataset lists give now (lists "
                "changed?). Pass overwrite=true to start this run again.")
        return stored
    world.barrier()  # every rank has sampled before rank 0 publishes the file
    if world.is_main:
        fresh.write(path)
    world.barrier()
    return fresh


def grad_mode(method):
    """The autograd mode ``predict`` runs in: inference mode, or plain ``no_grad`` for a
    method that declares ``test_time_grad`` (it enables gradients where it fits)."""
    return torch.no_grad() if getattr(method, "test_time_grad", False) else torch.inference_mode()


def predict_batch(method, loaded: list[LoadedEpisode], annotation: str) -> list[torch.Tensor]:
    batch = EpisodeBatch([le.episode for le in loaded], annotation)
    if annotation != "mask" and any(e.support_masks is not None for e in batch):
        raise RuntimeError(f"a {annotation} episode carries support labels; the loader must "
                           "drop them (methods see only the annotation they are given)")
    with grad_mode(method):
        preds = method.predict(batch)
    if len(preds) != len(loaded):
        raise RuntimeError(f"{type(method).__name__}.predict returned {len(preds)} masks "
                           f"for {len(loaded)} episodes")
    for p, le in zip(preds, loaded, strict=True):
        if tuple(p.shape[-2:]) != le.episode.query_size:
            raise RuntimeError(f"{type(method).__name__} returned a {tuple(p.shape)} mask for "
                               f"a {le.episode.query_size} query (episode {le.spec.index})")
    return preds


@dataclass
class UnitWork:
    """What a (seed, fold) unit still owes, with its loader already decoding."""

    seed: int
    fold: int
    manifest: Manifest
    done: dict
    batches: object  # iterator over lists of LoadedEpisode


def open_unit(plan: RunPlan, seed: int, fold: int, world: World,
              device: torch.device) -> UnitWork:
    """The unit's manifest and finished rows, and an iterator over the episodes this rank
    still owes whose loader workers start decoding at once."""
    cfg = plan.cfg
    manifest = unit_manifest(plan, seed, fold, world)
    done = records.read_rows(plan.run_dir / records.unit_name(seed, fold))
    todo = [s for s in manifest.episodes
            if s.index not in done and s.index % world.size == world.rank]
    batches = iter(episode_loader(plan.dataset, todo, cfg.annotation,
                                  plan.protocol.annotation_style,
                                  batch_size=int(cfg.batch_size),
                                  num_workers=int(cfg.num_workers),
                                  pin_memory=device.type == "cuda"))
    return UnitWork(seed, fold, manifest, done, batches)


def evaluate_unit(plan: RunPlan, method, work: UnitWork, world: World,
                  device: torch.device, timing: Timing, progress=None) -> Scorer:
    """Evaluate the episodes of one (seed, fold) this rank still owes (``work``, opened by
    :func:`open_unit`, so its loader decodes while the method prepares); returns this rank's
    scorer over its new episodes (rank 0's also holds those finished in earlier sessions)."""
    cfg, seed, fold = plan.cfg, work.seed, work.fold
    unit = records.unit_name(seed, fold)
    unit_dir = plan.run_dir / unit
    manifest, done, batches = work.manifest, work.done, work.batches
    classes = plan.dataset.classes(fold, cfg.split)
    # Outside any grad mode: a method may load or even train its fold's weights here.
    method.begin_unit(Unit(plan.dataset, fold, cfg.split, int(cfg.shot), cfg.annotation, seed))
    scorer = Scorer(classes, device)
    if world.is_main and done:
        scored = [r for r in done.values() if r["skip"] is None]
        scorer.add([r["class_id"] for r in scored],
                   torch.tensor([r["totals"] for r in scored], dtype=torch.int64).reshape(-1, 4))
    task = progress.add_task(f"{cfg.method} {unit}", total=len(manifest.episodes),
                             completed=len(done), miou="") if progress else None
    writer = records.RowWriter(unit_dir / f"rows-rank{world.rank}.jsonl")
    t = time.perf_counter()
    try:
        for loaded in batches:
            rows = _run_batch(plan, method, scorer, loaded, timing, t0=t, device=device)
            t = time.perf_counter()
            preds = {r["index"]: r.pop("_pred", None) for r in rows}
            writer.write(rows)
            if cfg.save_predictions:
                _save_predictions(plan.run_dir / "predictions" / unit, preds)
            timing.write += time.perf_counter() - t
            timing.episodes += len(loaded)
            if progress:
                progress.update(task, advance=len(loaded),
                                miou=f"mIoU {scorer.compute().miou:5.1f}")
            t = time.perf_counter()
    finally:
        writer.close()
    return scorer


def _run_batch(plan, method, scorer, loaded, timing, *, t0, device) -> list[dict]:
    t1 = time.perf_counter()
    timing.data += t1 - t0
    ok = [le for le in loaded if le.skip_reason is None]
    rows = {le.spec.index: {**le.spec.to_row(), "skip": le.skip_reason, "totals": None}
            for le in loaded}
    if ok:
        preds = predict_batch(method, ok, plan.cfg.annotation)
        t2 = time.perf_counter()
        timing.predict += t2 - t1
        labels = [torch.from_numpy(le.label).to(device, non_blocking=True) for le in ok]
        totals = scorer.update([p.to(device) for p in preds], labels,
                               [le.spec.class_id for le in ok],
                               size=plan.protocol.scoring.size, ignore=plan.protocol.scoring.ignore)
        timing.score += time.perf_counter() - t2
        for le, tot, p in zip(ok, totals.tolist(), preds, strict=True):
            rows[le.spec.index]["totals"] = tot
            rows[le.spec.index]["_pred"] = p
    return list(rows.values())


def _save_predictions(out: Path, preds: dict[int, torch.Tensor | None]) -> None:
    """One binary PNG (0/255) per scored episode, at the query's original size."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    for idx, p in preds.items():
        if p is not None:
            # The scorer's rule (foreground iff p > 0.5, in the prediction's dtype).
            mask = (p.detach().cpu() > 0.5).numpy().astype(np.uint8) * 255
            Image.fromarray(mask, mode="L").save(out / f"{idx:05d}.png")


def run(cfg: DictConfig) -> dict:
    """Run (or resume) the configured benchmark; returns the summary written to disk."""
    from refseg_bench.summary import summarize, write_outputs

    started = time.perf_counter()
    method = build_method(cfg)  # option errors before any data is touched or written
    hostmem.apply(cfg.host_memory)
    plan = plan_run(cfg)
    device = local_device(resolve_device(cfg.device))
    world = init_world(device)
    lock = RunLock(plan.run_dir)  # taken by rank 0 alone: the ranks of one run share it
    try:
        if world.is_main:
            lock.acquire()
            records.prepare_run_dir(plan.run_dir, cfg, bool(cfg.overwrite))
            records.announce_resume(plan)
        world.barrier()
        pending = [(seed, fold) for seed in plan.seeds for fold in plan.folds]
        # The first unit's loader workers decode while the model is built.
        work = open_unit(plan, *pending[0], world, device)
        method.setup(device, plan.dataset)
        timing = Timing()
        units = {}
        with _progress(cfg, world) as progress:
            for i, (seed, fold) in enumerate(pending):
                if i:
                    work = open_unit(plan, seed, fold, world, device)
                scorer = evaluate_unit(plan, method, work, world, device, timing, progress)
                scorer.all_reduce()
                units[(seed, fold)] = scorer.compute()
        world.barrier()
        if not world.is_main:
            return {}
        summary, table = summarize(plan, method, units, timing, device, world,
                                   elapsed=time.perf_counter() - started)
        write_outputs(plan, summary, table)
        return summary
    except KeyboardInterrupt as err:  # Ctrl-C: say how far the run got, for the rerun
        raise RunInterrupted(*records.episodes_done(plan)) from err
    finally:
        lock.release()
        shutdown(world)


def _progress(cfg: DictConfig, world: World):
    import contextlib

    if not (cfg.progress and world.is_main):
        return contextlib.nullcontext(None)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class EpisodesPerSecond(ProgressColumn):
        def render(self, task) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:6.1f} ep/s" if speed else "   ... ep/s")

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TaskProgressColumn(), EpisodesPerSecond(), TextColumn("{task.fields[miou]}"),
                    TimeRemainingColumn())
