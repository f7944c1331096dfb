"""Run configuration: a structured OmegaConf schema, YAML defaults, CLI dotlist overrides.

Resolution order (later wins): ``RunConfig`` defaults < ``configs/run.yaml`` <
``configs/methods/<method>.yaml`` (into ``method_args``) < ``configs/datasets/<dataset>.yaml``
(into ``dataset_args``) < command-line dotlist. The resolved config is saved with the run.
Configs name registry keys only, never import paths.
"""

from __future__ import annotations

import inspect
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from refseg_bench import hostmem
from refseg_bench.episodes import ANNOTATION_KINDS
from refseg_bench.errors import ConfigError
from refseg_bench.registry import DATASETS, METHODS, UnknownNameError, load_builtin_entries
from refseg_bench.rundir import check_run_id

DATA_ENV = "REFSEG_BENCH_DATA"
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:[0-9]+)?")
DEFAULT_DATA_ROOT = "~/.cache/refseg-bench/data"


@dataclass
class RunConfig:
    method: str = "proto"
    dataset: str = "synthetic"
    protocol: str | None = None  # None: the dataset's default protocol
    fold: Any = "all"  # an int, a list of ints, or "all"
    split: str | None = None  # None: the dataset's evaluation split (FSS-1000: test)
    shot: int = 1
    annotation: str = "mask"
    episodes: int | None = None  # None: the protocol's count
    seed: int | None = None  # None: the protocol's seed (or seeds)
    batch_size: int = 8
    num_workers: Any = "auto"  # loader processes: an int >= 0, or auto (loading.py)
    host_memory: str = "keep"  # keep | release: freed host memory reused or unmapped (hostmem)
    device: str = "auto"
    data_root: str | None = None  # None: $REFSEG_BENCH_DATA, else ~/.cache/refseg-bench/data
    results_dir: str = "results"
    run_id: str | None = None  # None: derived from the settings, so a rerun resumes
    save_predictions: bool = False
    overwrite: bool = False  # True: discard an existing record of the same run id
    progress: bool = True
    method_args: dict = field(default_factory=dict)
    dataset_args: dict = field(default_factory=dict)
    protocol_args: dict = field(default_factory=dict)


def _packaged_yaml(*parts: str) -> DictConfig | None:
    node = resources.files("refseg_bench.configs").joinpath(*parts)
    if not node.is_file():
        return None
    return OmegaConf.create(node.read_text())


def _name_from(overrides: DictConfig, base: DictConfig, key: str) -> str:
    return str(OmegaConf.select(overrides, key, default=None) or base[key])


def resolve_config(overrides: list[str] | None = None) -> DictConfig:
    """Build and validate the run config from CLI ``key=value`` overrides."""
    load_builtin_entries()
    cfg = None
    try:
        cli = _parse_dotlist(list(overrides or []))
        cfg = OmegaConf.structured(RunConfig)
        run_yaml = _packaged_yaml("run.yaml")
        if run_yaml is not None:
            cfg = OmegaConf.merge(cfg, run_yaml)
        method = _name_from(cli, cfg, "method")
        dataset = _name_from(cli, cfg, "dataset")
        METHODS.entry(method)
        DATASETS.entry(dataset)
        layers = [cfg]
        for section, folder, name in (("method_args", "methods", method),
                                      ("dataset_args", "datasets", dataset)):
            node = _packaged_yaml(folder, f"{name}.yaml")
            if node is not None:
                layers.append(OmegaConf.create({section: node}))
        cfg = OmegaConf.merge(*layers, cli)
        # Resolve ${...} now: a bad interpolation is a config error here, not a traceback
        # later, and the saved config.yaml holds the values the run used.
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as err:
        raise ConfigError(f"invalid setting: {_first_line(err)}{_bad_interpolation(cfg)}") \
            from err
    validate(cfg)
    return cfg


def _parse_dotlist(overrides: list[str]) -> DictConfig:
    import yaml  # OmegaConf's own dependency, which parses each value

    try:
        return OmegaConf.from_dotlist(overrides)
    except yaml.YAMLError as err:
        bad = next((o for o in overrides if not _parses(o)), "?")
        raise ConfigError(f"cannot parse the setting {bad!r} as YAML ({_first_line(err)}); "
                          "close every [ and {, e.g. fold=[0,2]") from err


def _parses(override: str) -> bool:
    import yaml

    try:
        OmegaConf.from_dotlist([override])
    except yaml.YAMLError:
        return False
    return True


def _first_line(err: BaseException) -> str:
    """OmegaConf appends ``full_key`` / ``object_type`` lines; the first line says it all."""
    lines = str(err).splitlines()
    key = getattr(err, "full_key", None)
    return (lines[0] if lines else type(err).__name__) + (f" (key: {key})" if key else "")


def _bad_interpolation(cfg: Any) -> str:
    """Where the first ``${...}`` that does not resolve is, as a sentence ('' if none)."""
    if not isinstance(cfg, DictConfig):
        return ""
    raw = OmegaConf.to_container(cfg, resolve=False)

    def walk(node: Any, prefix: str):
        items = node.items() if isinstance(node, dict) else \
            enumerate(node) if isinstance(node, list) else ()
        for k, v in items:
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, str) and "${" in v:
                try:
                    OmegaConf.select(cfg, key, throw_on_resolution_failure=True)
                except OmegaConfBaseException:
                    return key, v
            found = walk(v, key)
            if found:
                return found
        return None

    found = walk(raw, "")
    if found is None:
        return ""
    return (f" in {found[0]}={found[1]!r}; ${{...}} in a value is an OmegaConf "
            "interpolation: use a known resolver such as ${oc.env:VAR}, or write \\${...} "
            "for a literal")


def validate(cfg: DictConfig) -> None:
    if cfg.annotation not in ANNOTATION_KINDS:
        raise ConfigError(f"annotation must be one of {', '.join(ANNOTATION_KINDS)}; "
                          f"got {cfg.annotation!r}")
    if cfg.num_workers != "auto" and not (isinstance(cfg.num_workers, int)
                                          and not isinstance(cfg.num_workers, bool)):
        raise ConfigError(f"num_workers must be auto or an int >= 0; got {cfg.num_workers!r}")
    hostmem.check(cfg.host_memory)
    for key, low in (("shot", 1), ("batch_size", 1), ("num_workers", 0)):
        if cfg[key] != "auto" and int(cfg[key]) < low:
            raise ConfigError(f"{key} must be >= {low}; got {cfg[key]}")
    if cfg.episodes is not None and int(cfg.episodes) < 1:
        raise ConfigError(f"episodes must be >= 1 (or unset for the protocol's count); "
                          f"got {cfg.episodes}")
    if cfg.protocol is not None:
        from refseg_bench.protocols import protocol_names

        if cfg.protocol not in protocol_names():
            raise UnknownNameError(f"unknown protocol {cfg.protocol!r}. Known protocols: "
                                   f"{', '.join(protocol_names())}")
    if cfg.split is not None and cfg.split not in ("train", "val", "test"):
        raise ConfigError(f"split must be train, val or test; got {cfg.split!r}")
    if not DEVICE_PATTERN.fullmatch(str(cfg.device)):
        raise ConfigError(f"device must be auto, cpu, cuda, cuda:N or mps; got {cfg.device!r}")
    if cfg.run_id is not None:
        check_run_id(str(cfg.run_id))


def data_root(cfg: DictConfig) -> Path:
    return Path(cfg.data_root or os.environ.get(DATA_ENV) or DEFAULT_DATA_ROOT).expanduser()


def build_dataset(cfg: DictConfig, defaults: dict | None = None):
    """Instantiate the configured dataset. Its root is ``dataset_args.root`` when set, else
    ``<data_root>/<dataset_args.dirname or dataset name>``. ``defaults`` (a protocol's
    ``dataset_args``) fill options that ``dataset_args`` does not set."""
    args = {**(defaults or {}), **(OmegaConf.to_container(cfg.dataset_args, resolve=True) or {})}
    root = args.pop("root", None)
    dirname = args.pop("dirname", None) or cfg.dataset
    cls = DATASETS.get(cfg.dataset)
    check_options(cfg.dataset, cls, args, extra=("root", "dirname"))
    return cls(Path(root).expanduser() if root else data_root(cfg) / dirname, **args)


def check_options(name: str, cls: type, options: dict, extra: tuple[str, ...] = ()) -> None:
    """Refuse ``dataset_args`` keys that ``cls.__init__`` does not take (a misspelt option
    would otherwise be a TypeError traceback), naming the valid ones and close matches.
    A constructor with ``**options`` accepts anything and is not checked."""
    from refseg_bench.options import unknown_keys_error

    params = inspect.signature(cls).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    valid = sorted({p.name for p in params if p.kind is not inspect.Parameter.VAR_POSITIONAL
                    and p.name != "root"} | set(extra))
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise unknown_keys_error(unknown, valid, f"dataset_args of {name!r}")


def build_method(cfg: DictConfig):
    options = OmegaConf.to_container(cfg.method_args, resolve=True) or {}
    return METHODS.get(cfg.method).from_config(options)


def folds_of(cfg: DictConfig, n_folds: int) -> list[int]:
    """``fold=all`` -> every fold; an int or a list of ints -> those, each checked."""
    raw = cfg.fold
    if raw == "all":
        return list(range(n_folds))
    folds = list(raw) if OmegaConf.is_list(raw) or isinstance(raw, list | tuple) else [raw]
    try:
        folds = [int(f) for f in folds]
    except (TypeError, ValueError) as err:
        raise ConfigError(f"fold must be 'all', an int or a list of ints; got {raw!r}") from err
    bad = [f for f in folds if not 0 <= f < n_folds]
    if bad:
        raise ConfigError(f"fold {bad} out of range: {cfg.dataset} has folds 0..{n_folds - 1}")
    return folds
