"""Which trained weights a method evaluates a fold with, and what they are worth.

For fold ``f``, in order of precedence:

1. ``untrained: true``: the freshly initialised weights (a baseline; ``random``);
2. ``checkpoint``: a file in the method's official format, ``{fold}`` in the path replaced
   by the fold; ``official`` only if its sha256 equals a published one
   (:func:`refseg_bench.trust.file_kind`), else ``unverified``;
3. the checkpoint trained by this harness under ``checkpoint_dir``
   (:mod:`refseg_bench.trained.store`), ``trained``; when there is none and
   ``train_if_missing`` is set, it is trained first, on the fold's base classes, with a
   loud message. A checkpoint trained with other settings or other frozen models than the
   ones configured now is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from refseg_bench.errors import CheckpointError
from refseg_bench.models.checkpoints import sha256_file
from refseg_bench.notices import say
from refseg_bench.trained import store
from refseg_bench.trust import file_kind


@dataclass(frozen=True)
class TrainedOptions:
    """Options every trained method shares; a method's ``Options`` dataclass inherits them.

    ``checkpoint``: an official-format weights file for every fold (``{fold}`` replaced),
    instead of training. ``checkpoint_dir``: where trained checkpoints live.
    ``train_if_missing``: train a fold first when it has no checkpoint (else an error that
    says how to train it). ``untrained``: evaluate the freshly initialised weights.
    """

    checkpoint: str | None = None
    checkpoint_dir: str = "results/checkpoints"
    train_if_missing: bool = True
    untrained: bool = False


@dataclass(frozen=True)
class FoldWeights:
    """The weights a fold is evaluated with: ``source`` (untrained | checkpoint | trained),
    the file and its sha256 (None for untrained), and the trust kind."""

    fold: int
    source: str
    path: str | None
    sha256: str | None
    weights: str

    def to_record(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TrainedFold:
    """How to find, load and train one fold's weights (supplied by the method)."""

    method: str
    fold: int
    annotation: str
    dataset: str
    directory: Path  # where this harness trains the fold
    weights_file: str
    expected_info: dict  # what a trained checkpoint must have been trained with
    load: Callable[[Path], None]  # strict load of an official-format file
    reset: Callable[[], None]  # back to the freshly initialised weights
    train: Callable[[], None]  # train the fold into ``directory``


def resolve(opts: TrainedOptions, f: TrainedFold) -> FoldWeights:
    """Load the weights of ``f.fold`` by the rule of the module docstring."""
    if opts.untrained:
        f.reset()
        return FoldWeights(f.fold, "untrained", None, None, "random")
    if opts.checkpoint:
        path = Path(str(opts.checkpoint).format(fold=f.fold)).expanduser()
        f.load(path)
        sha = sha256_file(path)
        return FoldWeights(f.fold, "checkpoint", str(path), sha, file_kind(sha)[0])
    if not store.is_complete(f.directory, f.weights_file):
        if not opts.train_if_missing:
            raise CheckpointError(
                f"no trained {f.method} weights for fold {f.fold} ({f.annotation}) in "
                f"{f.directory}. Train them: refseg-bench train method={f.method} "
                f"dataset={f.dataset} fold={f.fold} annotation={f.annotation} (or set "
                "method_args.train_if_missing=true).")
        say(f.method, f"[bold]no trained checkpoint for fold {f.fold} (annotation="
                      f"{f.annotation}) in {f.directory}: TRAINING IT NOW[/bold] on the base "
                      "classes.")
        f.train()
    diff = store.info_mismatch(f.expected_info, store.read_info(f.directory))
    if diff:
        raise CheckpointError(
            f"the checkpoint in {f.directory} was trained with different {', '.join(diff)} "
            "than configured now. Delete that directory to retrain, or point "
            "method_args.checkpoint_dir elsewhere.")
    path = f.directory / f.weights_file
    f.load(path)
    return FoldWeights(f.fold, "trained", str(path), sha256_file(path), "trained")


def summarize(loaded: dict[int, FoldWeights]) -> dict:
    """Record fields for the folds evaluated: per-fold sources, the least trusted kind, and
    ``checkpoint``/``checkpoint_sha256`` (one file) or a per-fold sha256 map."""
    from refseg_bench.trust import combine

    out = {"fold_weights": {str(k): v.to_record() for k, v in sorted(loaded.items())},
           "trained_weights": combine(*(v.weights for v in loaded.values())) if loaded
           else "random"}
    shas = {str(k): v.sha256 for k, v in sorted(loaded.items()) if v.sha256}
    if len(shas) == 1:
        (fold, sha), = shas.items()
        out["checkpoint"], out["checkpoint_sha256"] = loaded[int(fold)].path, sha
    elif shas:
        out["checkpoint_sha256"] = shas
    return out
