"""Named evaluation protocols (docs/protocols.md §6): how episodes are drawn and scored.

A preset lives in ``configs/protocols/<name>.yaml``. ``dataset_overrides`` lets a preset
follow its paper family per benchmark (e.g. HSNet cycles (image, class) pairs on PASCAL
but draws classes uniformly on COCO).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from importlib import resources

from omegaconf import OmegaConf

from refseg_bench.errors import ConfigError
from refseg_bench.registry import UnknownNameError

# How weak reference annotations are simulated (refseg_bench/annotations.py,
# docs/protocols.md §8): the harness's own convention, or VRP-SAM's evaluation one.
ANNOTATION_STYLES = ("harness", "vrp-sam")


@dataclass(frozen=True)
class Scoring:
    """``size=None`` scores at the query label's original size; ``size=N`` nearest-resizes
    the label to ``N x N`` and bilinearly resizes the prediction to match (HSNet, VRP-SAM,
    Matcher). ``ignore`` removes label-255 pixels from both areas."""

    size: int | None = None
    ignore: bool = True


@dataclass(frozen=True)
class Protocol:
    name: str
    description: str
    sampler: str
    episodes: int
    seed: int
    distinct_supports: bool
    scoring: Scoring = field(default_factory=Scoring)
    # Several seeds: the run is repeated per seed and reported as mean and spread.
    seeds: tuple[int, ...] = ()
    family: str = ""
    # Dataset options the preset implies (e.g. pascal5i lists=pfenet, train_filter=bam),
    # set per dataset in ``dataset_overrides``; ``build_dataset`` puts them under the
    # user's ``dataset_args``, which win.
    dataset_args: dict = field(default_factory=dict)
    dataset_overrides: dict = field(default_factory=dict)
    # Which convention simulates box / point / scribble references (ANNOTATION_STYLES).
    annotation_style: str = "harness"
    # Exact replay of the official test loader (``refseg_bench.replay``): ``replay`` names
    # it (``code``) with its settings (``workers``, ``ranks``, ``episodes``: the official
    # count, ``note``); ``exact: true`` uses it instead of ``sampler``.
    exact: bool = False
    replay: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.annotation_style not in ANNOTATION_STYLES:
            raise ConfigError(f"protocol {self.name!r}: annotation_style must be one of "
                              f"{', '.join(ANNOTATION_STYLES)}; got {self.annotation_style!r}")

    def for_dataset(self, dataset: str) -> Protocol:
        """The preset with this dataset's overrides applied."""
        return self.with_overrides(self.dataset_overrides.get(dataset, {}))

    def with_overrides(self, over: dict) -> Protocol:
        """A copy with some fields replaced (``scoring`` and ``replay`` may be given
        partially)."""
        over = dict(over)
        if not over:
            return self
        unknown = set(over) - {f.name for f in fields(self)}
        if unknown:
            raise ConfigError(f"unknown protocol field(s) {sorted(unknown)}; "
                              f"valid: {sorted(f.name for f in fields(self))}")
        scoring = over.pop("scoring", None)
        if "replay" in over:  # a partial replay spec (e.g. other workers) keeps the rest
            over["replay"] = {**self.replay, **(over["replay"] or {})}
        if not isinstance(over.get("exact", False), bool):
            raise ConfigError(f"protocol field exact must be true or false, got "
                              f"{over['exact']!r}")
        out = replace(self, **{k: (tuple(v) if k == "seeds" else v) for k, v in over.items()})
        if scoring is not None:
            out = replace(out, scoring=replace(self.scoring, **scoring))
        return out

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("dataset_overrides")
        d["seeds"] = list(self.seeds)
        return d


def protocol_names() -> list[str]:
    folder = resources.files("refseg_bench.configs") / "protocols"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def resolve_protocol(name: str, dataset: str, protocol_args: dict | None = None) -> Protocol:
    """Preset ``name`` as a run on ``dataset`` uses it: the dataset's overrides, then the
    user's ``protocol_args``; with ``exact``, the official loop's episode count
    (``replay.episodes``, e.g. PFENet's 5001) unless ``protocol_args`` sets ``episodes``."""
    args = dict(protocol_args or {})
    p = load_protocol(name).for_dataset(dataset).with_overrides(args)
    if p.exact and "episodes" in p.replay and "episodes" not in args:
        p = replace(p, episodes=int(p.replay["episodes"]))
    return p


def load_protocol(name: str) -> Protocol:
    names = protocol_names()
    if name not in names:
        raise UnknownNameError(f"unknown protocol {name!r}. Known protocols: {', '.join(names)}")
    text = (resources.files("refseg_bench.configs") / "protocols" / f"{name}.yaml").read_text()
    raw = OmegaConf.to_container(OmegaConf.create(text), resolve=True)
    scoring = Scoring(**raw.pop("scoring", {}))
    seeds = tuple(raw.pop("seeds", ()) or ())
    return Protocol(name=name, scoring=scoring, seeds=seeds, **raw)
