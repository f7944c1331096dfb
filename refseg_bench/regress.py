"""The regression suite: every registered method on a small sampled run, compared episode
by episode with a golden record committed in the repository.

``configs/regress.yaml`` holds the shared run settings and, per method, its ``tiny``
configuration (also read by the method-contract test: one list), extra ``regress``
settings (a trained method's tiny training budget) and the ``annotations`` it is checked
with. ``configs/goldens/<method>.json`` holds, per annotation kind and fold, the manifest
sha256, the sha256 of the weights a trained method evaluated, the fold mIoU and every
episode's integer intersection and union totals.

Runs are made on the CPU with one torch thread and pinned kernels (:data:`CPU_ENV`,
:func:`cpu_paths`): the totals then depend neither on the machine's core count nor on its
vector instruction set (beyond AVX2), and they are compared for equality, with no
tolerance.
"""

from __future__ import annotations

import contextlib
import json
import platform
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from refseg_bench.errors import ConfigError
from refseg_bench.records import package_versions

GOLDEN_FORMAT = 1
PLAN_FILE = "regress.yaml"
GOLDEN_FOLDER = "goldens"
DEFAULT_ANNOTATIONS = ("mask",)
# The regression decides these itself: where a run writes, and that it starts afresh.
RESERVED_KEYS = ("method", "annotation", "results_dir", "run_id", "overwrite", "progress",
                 "save_predictions")
ENV_PACKAGES = ("torch", "torchvision", "numpy", "pillow", "scipy", "segment-anything", "sam2")


@dataclass(frozen=True)
class Case:
    """One regression run: ``method`` with ``annotation`` references and ``settings`` (the
    complete ``key=value`` run settings, but for where the run writes)."""

    method: str
    annotation: str
    settings: tuple[str, ...]

    @property
    def run_id(self) -> str:
        return f"{self.method}_{self.annotation}"


def configs_dir() -> Path:
    return Path(str(resources.files("refseg_bench.configs")))


def default_golden_dir() -> Path:
    """``configs/goldens`` of this checkout (the package is installed in editable mode)."""
    return configs_dir() / GOLDEN_FOLDER


def load_plan(path: str | Path | None = None) -> dict:
    """The regression plan (``configs/regress.yaml`` unless ``path``), checked: a ``run``
    mapping and a ``methods`` mapping of entries with ``tiny``, ``regress`` (lists of
    ``key=value``) and ``annotations``."""
    path = Path(path) if path else configs_dir() / PLAN_FILE
    try:
        plan = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except (OSError, OmegaConfBaseException) as err:
        raise ConfigError(f"cannot read the regression plan {path}: {err}") from err
    if not isinstance(plan, dict) or set(plan) != {"run", "methods"}:
        raise ConfigError(f"{path}: expected exactly the keys `run` and `methods`, found "
                          f"{sorted(plan) if isinstance(plan, dict) else type(plan).__name__}")
    reserved = sorted(set(plan["run"]) & set(RESERVED_KEYS))
    if reserved:
        raise ConfigError(f"{path}: `run` may not set {reserved}; the regression sets them")
    if isinstance(plan["run"].get("seed"), list | type(None)):
        raise ConfigError(f"{path}: `run.seed` must be one integer (goldens are per fold)")
    for name, entry in plan["methods"].items():
        entry = entry or {}
        unknown = sorted(set(entry) - {"tiny", "regress", "annotations"})
        if unknown:
            raise ConfigError(f"{path}: method {name!r} has unknown keys {unknown}; valid: "
                              "tiny, regress, annotations")
        for key in ("tiny", "regress"):
            items = entry.get(key) or []
            if not all(isinstance(s, str) and "=" in s for s in items):
                raise ConfigError(f"{path}: {name}.{key} must be a list of key=value strings, "
                                  f"got {items!r}")
        plan["methods"][name] = entry
    return plan


def tiny_args(path: str | Path | None = None) -> dict[str, list[str]]:
    """Method name -> its tiny configuration (``key=value`` settings)."""
    return {name: list(e.get("tiny") or []) for name, e in load_plan(path)["methods"].items()}


def _dotvalue(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_dotvalue(v) for v in value) + "]"
    return str(value)


def cases(plan: dict, methods: list[str] | None = None) -> list[Case]:
    """The plan's cases, in plan order, for ``methods`` (all when None)."""
    known = list(plan["methods"])
    unknown = [m for m in methods or [] if m not in known]
    if unknown:
        raise ConfigError(f"no regression entry for {unknown} in configs/{PLAN_FILE}; methods "
                          f"with one: {', '.join(known)}. A new method adds its `tiny` "
                          "configuration there first.")
    shared = [f"{k}={_dotvalue(v)}" for k, v in plan["run"].items()]
    out = []
    for name in methods or known:
        entry = plan["methods"][name]
        extra = [*(entry.get("tiny") or []), *(entry.get("regress") or [])]
        for kind in entry.get("annotations") or DEFAULT_ANNOTATIONS:
            out.append(Case(name, kind, (f"method={name}", f"annotation={kind}", *shared,
                                         *extra)))
    return out


# CPU code paths the goldens are made with, chosen so that any x86-64 machine with AVX2
# computes the same floats: ATen's AVX2 kernels (an AVX-512 machine would pick others),
# MKL in conditional-numerical-reproducibility mode for AVX2, and (in ``cpu_paths``)
# oneDNN off, whose kernels pick their blocking from the machine's cache sizes. Measured:
# without these, forcing AVX2 on an AVX-512 machine moved a few pixels of the SAM-based
# methods and changed VRP-SAM's trained weights. They act only if set before torch runs
# its first operation, which `refseg-bench regress` does.
CPU_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"}


def pin_cpu_paths() -> None:
    """Set :data:`CPU_ENV` in this process (call before torch's first operation)."""
    import os

    os.environ.update(CPU_ENV)


@contextlib.contextmanager
def cpu_paths():
    """One intra-op thread (a reduction split by thread count rounds differently) and
    oneDNN off, restoring both afterwards."""
    import torch

    before = torch.get_num_threads(), torch.backends.mkldnn.enabled
    torch.set_num_threads(1)
    torch.backends.mkldnn.enabled = False  # (mkldnn.flags() would also touch TF32, warning)
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        torch.backends.mkldnn.enabled = before[1]


def cpu_capability() -> str:
    import torch

    return torch.backends.cpu.get_cpu_capability()


def source_fingerprint() -> str:
    """sha256 over the harness's Python sources (core, methods, datasets): trained weights
    cached by an earlier regression are reused only while it is unchanged."""
    import hashlib

    digest = hashlib.sha256()
    for package in ("refseg_bench", "refseg_bench.methods", "refseg_bench.datasets"):
        root = Path(str(resources.files(package)))
        for path in sorted(root.rglob("*.py")):
            digest.update(f"{package}/{path.relative_to(root)}\n".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def prepare_cache(workdir: Path, retrain: bool = False) -> str | None:
    """Keep ``workdir/checkpoints`` (weights trained by earlier regression runs) only while
    the sources that trained them are unchanged and ``retrain`` is not asked; returns why
    the cache was discarded, or None."""
    import shutil

    cache, stamp = Path(workdir) / "checkpoints", Path(workdir) / "checkpoints.source-sha256"
    now = source_fingerprint()
    reason = None
    if cache.exists():
        if retrain:
            reason = "--retrain"
        elif not stamp.is_file() or stamp.read_text().strip() != now:
            reason = "the sources changed since those weights were trained"
        if reason:
            shutil.rmtree(cache)
    Path(workdir).mkdir(parents=True, exist_ok=True)
    stamp.write_text(now + "\n")
    return reason


def run_case(case: Case, workdir: Path) -> dict:
    """Run ``case`` afresh under ``workdir`` (trained weights are cached in
    ``workdir/checkpoints``) and return its golden record: settings and, per fold, the
    manifest sha256, the weights sha256 (trained methods), the mIoU and every episode."""
    from refseg_bench import records
    from refseg_bench.config import resolve_config
    from refseg_bench.runner import run

    cfg = resolve_config([*case.settings, f"results_dir={workdir}", f"run_id={case.run_id}",
                          "overwrite=true", "progress=false", "save_predictions=false"])
    with cpu_paths():
        summary = run(cfg)
    fold_weights = summary["method_info"].get("fold_weights", {})
    folds = {}
    for unit in summary["units"]:
        rows = records.read_rows(Path(summary["run_dir"]) /
                                 records.unit_name(unit["seed"], unit["fold"]))
        folds[str(unit["fold"])] = {
            "manifest_sha256": unit["manifest_sha256"],
            "weights_sha256": fold_weights.get(str(unit["fold"]), {}).get("sha256"),
            "miou": round(float(unit["miou"]), 4),
            "episodes": [_episode(rows[i]) for i in sorted(rows)],
        }
    return {"settings": list(case.settings), "folds": folds}


def _episode(row: dict) -> dict:
    out = {"index": int(row["index"]), "class_id": int(row["class_id"]),
           "query": row["query"], "totals": row["totals"]}
    if row.get("skip") is not None:
        out["skip"] = row["skip"]
    return out


def environment() -> dict:
    """Library versions the goldens were made with (a change there can move numbers)."""
    return {"python": platform.python_version(), "packages": package_versions(ENV_PACKAGES),
            "torch_threads": 1, "device": "cpu", "cpu_capability": cpu_capability(),
            "onednn": False, "mkl_cbwr": CPU_ENV["MKL_CBWR"]}


def golden_record(method: str, case_records: dict[str, dict]) -> dict:
    return {"format": GOLDEN_FORMAT, "method": method,
            "accept_changes_with": f"refseg-bench regress --update --method {method}",
            "environment": environment(), "cases": case_records}


def golden_path(golden_dir: Path, method: str) -> Path:
    return Path(golden_dir) / f"{method}.json"


def read_golden(path: Path) -> dict | None:
    """The golden record at ``path``, None when there is none."""
    if not path.is_file():
        return None
    try:
        golden = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"golden record {path} is not valid JSON ({err}); restore it from "
                          "git or regenerate it with `refseg-bench regress --update`") from err
    if golden.get("format") != GOLDEN_FORMAT:
        raise ConfigError(f"golden record {path} has format {golden.get('format')!r}, this "
                          f"version reads {GOLDEN_FORMAT}; regenerate it with --update")
    return golden


def format_golden(golden: dict) -> str:
    """JSON with one episode per line, so a changed episode is one changed line in a diff."""
    marks: dict[str, list[dict]] = {}
    body = json.loads(json.dumps(golden))
    for case_name, case in body["cases"].items():
        for fold, entry in case["folds"].items():
            mark = f"@@episodes:{case_name}:{fold}@@"
            marks[mark] = entry["episodes"]
            entry["episodes"] = mark
    text = json.dumps(body, indent=2)
    for mark, episodes in marks.items():
        indent = " " * 12
        lines = ",\n".join(indent + json.dumps(e) for e in episodes)
        text = text.replace(json.dumps(mark), "[\n" + lines + "\n" + " " * 10 + "]")
    return text + "\n"


def write_golden(path: Path, golden: dict) -> str:
    """Write ``golden`` to ``path``; returns the previous text ('' when new)."""
    old = path.read_text() if path.is_file() else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(format_golden(golden))
    return old
