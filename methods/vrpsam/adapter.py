"""The VRP-SAM method adapter: per-fold trained encoders in front of a frozen SAM.

Per-fold checkpoints: the runner hands folds to ``predict`` through ``episode.spec.fold``,
so the adapter activates a fold's encoder lazily, the first time an episode of that fold
arrives (one strict load per fold switch; the runner evaluates fold by fold). The encoder
for fold ``f`` is, in order of precedence:

1. ``untrained: true``: the freshly initialised encoder (a baseline, weights ``random``);
2. ``checkpoint``: an official-format file, ``{fold}`` in the path replaced by the fold;
3. the checkpoint trained by this harness under ``checkpoint_dir`` (layout in
   :mod:`~refseg_bench.methods.vrpsam.store`); when there is none and ``train_if_missing``
   is set, it is trained first, on the fold's base classes, with a loud message.

k-shot: each support gives its own 50 tokens; the k prompt sets are concatenated into one
sparse prompt of 50 k tokens (the official ``predict_mask_nshot``). Training is 1-shot.
"""

from __future__ import annotations

import copy
import sys
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

import torch

from refseg_bench.errors import CheckpointError
from refseg_bench.methods.base import Method
from refseg_bench.methods.vrpsam import store
from refseg_bench.methods.vrpsam.inputs import episode_tensors, logits_to_size
from refseg_bench.methods.vrpsam.settings import choose_preset, parse_options

REAL = ("official", "unverified")


def _say(message: str) -> None:
    from rich.console import Console

    Console(file=sys.stderr).print(f"[bold yellow][vrpsam][/bold yellow] {message}")


class VRPSAM(Method):
    """VRP-SAM (Sun et al., CVPR 2024): visual reference prompts for a frozen SAM."""

    name = "vrpsam"

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.opts = parse_options(options)
        self.size, self.preset, self.size_reason = choose_preset(self.opts)
        self.net = None
        self.dataset = None
        self._initial_state: dict | None = None
        self._active: tuple[int, str] | None = None
        self.loaded: dict[int, dict] = {}  # fold -> {"path", "sha256", "weights"}

    # --- set-up ---------------------------------------------------------------------------
    def setup(self, device: torch.device, dataset) -> None:
        from refseg_bench.methods.vrpsam.build import build_net

        super().setup(device, dataset)
        self.dataset = dataset
        if self.net is None or self.net.device != torch.device(device):
            _say(f"{self.size} preset ({self.size_reason})")
            self.net = build_net(self.preset.model, torch.device(device))
            self._initial_state = copy.deepcopy(self.net.encoder.state_dict())
        self._active = None

    def _require_setup(self) -> None:
        if self.net is None:
            raise RuntimeError("VRPSAM.setup(device, dataset) must be called before predict/fit")

    def checkpoint_key(self, dataset, fold: int, annotation: str) -> store.CheckpointKey:
        m = self.preset.model
        return store.CheckpointKey(dataset.name, fold, m.backbone, m.sam, annotation,
                                   self.preset.train.shot, m.image_size)

    def checkpoint_directory(self, dataset, fold: int, annotation: str) -> Path:
        return self.checkpoint_key(dataset, fold, annotation).directory(self.opts.checkpoint_dir)

    def training_info(self, dataset, fold: int, annotation: str) -> dict:
        """What a trained checkpoint depends on (stored in ``train.json`` and compared on
        resume and load): the key, recipe, model spec and identities of the frozen models."""
        from refseg_bench.methods.vrpsam.fit import module_fingerprint
        from refseg_bench.models.provenance import weights_info

        sam_info = weights_info(self.net.sam)
        return {
            "key": self.checkpoint_key(dataset, fold, annotation).to_dict(),
            "settings": self.preset.train.to_dict(),
            "model": asdict(self.preset.model),
            "sam_identity": sam_info.sha256 or module_fingerprint(self.net.sam),
        }

    # --- training -------------------------------------------------------------------------
    def fit(self, dataset, fold: int, *, annotation: str, device: torch.device,
            progress: bool = True) -> dict:
        """Meta-train the encoder on ``fold``'s base classes (resuming if possible) and write
        its checkpoint; returns where it is and how training went."""
        from refseg_bench.methods.vrpsam.fit import fit_fold

        if self.net is None or self.net.device != torch.device(device):
            self.setup(device, dataset)
        directory = self.checkpoint_directory(dataset, fold, annotation)
        self.net.encoder.load_state_dict(self._initial_state)
        self._active = None
        with torch.inference_mode(False), torch.enable_grad():
            result = fit_fold(self.net, dataset, fold, annotation, self.preset.train, directory,
                              self.training_info(dataset, fold, annotation),
                              show_progress=progress, num_workers=self.opts.train_workers)
        losses = result.progress.losses
        tail = losses[-max(len(losses) // max(self.preset.train.epochs, 1), 1):] or [float("nan")]
        return {"checkpoint": str(result.checkpoint), "sha256": result.sha256,
                "directory": str(result.directory), "epochs": result.progress.epoch,
                "steps": result.progress.step, "resumed_from_epoch": result.resumed_from_epoch,
                "last_epoch_loss": sum(tail) / len(tail), "train_seconds": result.progress.seconds}

    # --- per-fold weights -----------------------------------------------------------------
    def _activate(self, fold: int, annotation: str) -> None:
        if self._active == (fold, annotation):
            return
        with torch.inference_mode(False):
            if self.opts.untrained:
                self.net.encoder.load_state_dict(self._initial_state)
                self.loaded[fold] = {"path": None, "sha256": None, "weights": "random"}
            elif self.opts.checkpoint:
                path = Path(str(self.opts.checkpoint).format(fold=fold)).expanduser()
                sha = store.load_encoder(self.net.encoder, path)
                self.loaded[fold] = {"path": str(path), "sha256": sha, "weights": "official"}
            else:
                self._load_trained(fold, annotation)
        self.net.encoder.eval()
        self._active = (fold, annotation)

    def _load_trained(self, fold: int, annotation: str) -> None:
        directory = self.checkpoint_directory(self.dataset, fold, annotation)
        if not store.is_complete(directory):
            if not self.opts.train_if_missing:
                raise CheckpointError(
                    f"no trained VRP-SAM encoder for fold {fold} ({annotation}) in {directory}. "
                    f"Train it: refseg-bench train method=vrpsam dataset={self.dataset.name} "
                    f"fold={fold} annotation={annotation} (or set "
                    "method_args.train_if_missing=true).")
            t = self.preset.train
            _say(f"[bold]no trained checkpoint for fold {fold} (annotation={annotation}) in "
                 f"{directory}: TRAINING IT NOW[/bold] on the base classes ({self.size} preset: "
                 f"{t.epochs} epochs x {t.episodes_per_epoch or 'all'} episodes, batch "
                 f"{t.batch_size}).")
            self.fit(self.dataset, fold, annotation=annotation, device=self.net.device,
                     progress=True)
        expected = self.training_info(self.dataset, fold, annotation)
        found = store.read_info(directory) or {}
        diff = sorted(k for k in expected if found.get(k) != expected[k])
        if diff:
            raise CheckpointError(
                f"the checkpoint in {directory} was trained with different {', '.join(diff)} "
                "than configured now. Delete that directory to retrain, or point "
                "method_args.checkpoint_dir elsewhere.")
        path = directory / store.ENCODER_FILE
        sha = store.load_encoder(self.net.encoder, path)
        self.loaded[fold] = {"path": str(path), "sha256": sha, "weights": "trained"}

    # --- inference ------------------------------------------------------------------------
    def predict(self, batch) -> list[torch.Tensor]:
        """Foreground probability ``(H, W)`` per episode at the query's original size."""
        self._require_setup()
        out: list[torch.Tensor | None] = [None] * len(batch)
        by_fold: dict[int, list[int]] = defaultdict(list)
        for i, episode in enumerate(batch.episodes):
            by_fold[episode.spec.fold].append(i)
        step = max(int(self.opts.batch_size), 1)
        for fold, indices in by_fold.items():
            self._activate(fold, batch.annotation)
            for start in range(0, len(indices), step):
                chunk = indices[start:start + step]
                episodes = [batch.episodes[i] for i in chunk]
                tensors = episode_tensors(episodes, self.net.image_size).to(self.net.device)
                logits = self.net.logits(tensors, [e.query_image for e in episodes])
                for i, logit, size in zip(chunk, logits, tensors.sizes, strict=True):
                    out[i] = logits_to_size(logit[None], size)[0, 0].sigmoid()
        return out

    # --- provenance -----------------------------------------------------------------------
    def describe(self) -> dict:
        from refseg_bench.models.provenance import weights_info

        m = self.preset.model
        info = {"model": f"vrpsam/{m.backbone}+sam_{m.sam}@{m.image_size}", "size": self.size,
                "size_reason": self.size_reason, "model_spec": asdict(m),
                "train_settings": self.preset.train.to_dict(),
                "k_shot": "prompt sets of the k supports concatenated (50 k sparse tokens)"}
        kinds = {v["weights"] for v in self.loaded.values()} or {"random"}
        # Folds with different sources: report the least trusted one.
        encoder_weights = next(k for k in ("random", "trained", "official") if k in kinds)
        info["vrp_encoder_weights"] = encoder_weights
        if self.net is not None:
            sam, backbone = weights_info(self.net.sam), self.net.backbone_info
            info["sam"] = sam.to_record()
            info["backbone"] = backbone.to_record() if backbone else None
            foundations_real = sam.weights in REAL and bool(backbone) and \
                backbone.weights in REAL
        else:
            foundations_real = False
        info["weights"] = encoder_weights if foundations_real else "random"
        info["checkpoints"] = {str(f): v for f, v in sorted(self.loaded.items())}
        shas = {str(f): v["sha256"] for f, v in sorted(self.loaded.items()) if v["sha256"]}
        if len(shas) == 1:
            (fold, sha), = shas.items()
            info["checkpoint"], info["checkpoint_sha256"] = self.loaded[int(fold)]["path"], sha
        elif shas:
            info["checkpoint_sha256"] = shas
        return info
