"""Comparing a regression run with its golden record: what moved, per method and fold.

An episode *moved* when its intersection/union totals, its skip status, its class or its
query differ from the golden record (compared by episode index, exactly). A fold also
fails, with a note saying why, when its episodes were drawn differently (manifest sha256),
a trained method evaluated other weights, the run settings changed, or the golden record
has no entry for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Moved:
    """One episode whose record differs: ``before``/``after`` are the golden and current
    entries (``index``, ``class_id``, ``query``, ``totals`` = [fg I, fg U, bg I, bg U]),
    either None when the episode exists on one side only."""

    index: int
    before: dict | None
    after: dict | None

    @staticmethod
    def _iou(entry: dict | None) -> float | None:
        if not entry or not entry.get("totals"):
            return None
        inter, union = entry["totals"][:2]
        return 100.0 * inter / union if union else None

    def describe(self) -> str:
        side = self.after or self.before
        old, new = self._iou(self.before), self._iou(self.after)
        fmt = lambda v: "skipped" if v is None else f"{v:.2f}"  # noqa: E731
        what = f"IoU {fmt(old)} -> {fmt(new)}"
        if self.before and self.after and (self.before["query"], self.before["class_id"]) != (
                self.after["query"], self.after["class_id"]):
            what = (f"now {self.after['query']} class {self.after['class_id']} (was "
                    f"{self.before['query']} class {self.before['class_id']}), " + what)
        elif self.before is None or self.after is None:
            what = "new episode" if self.before is None else "episode gone"
        return f"#{self.index} ({side['query']}, class {side['class_id']}): {what}"


@dataclass
class FoldCheck:
    """The comparison of one (method, annotation, fold)."""

    method: str
    annotation: str
    fold: str
    n_episodes: int
    miou_golden: float | None
    miou_now: float | None
    moved: list[Moved] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.moved and not self.notes

    @property
    def max_iou_change(self) -> float:
        """Largest absolute per-episode IoU change (points), 0 when nothing moved."""
        changes = [abs(Moved._iou(m.after) - Moved._iou(m.before)) for m in self.moved
                   if Moved._iou(m.after) is not None and Moved._iou(m.before) is not None]
        return max(changes, default=0.0)


def check_case(method: str, annotation: str, golden_case: dict | None, now: dict
               ) -> list[FoldCheck]:
    """Per-fold checks of one case: ``golden_case`` and ``now`` are case records of
    :func:`refseg_bench.regress.run_case` (``golden_case`` None: no golden yet)."""
    out = []
    settings_note = _settings_note(golden_case, now)
    golden_folds = (golden_case or {}).get("folds", {})
    for fold in sorted(set(now["folds"]) | set(golden_folds), key=int):
        g, n = golden_folds.get(fold), now["folds"].get(fold)
        check = FoldCheck(method, annotation, fold, len(n["episodes"]) if n else 0,
                          g["miou"] if g else None, n["miou"] if n else None)
        if golden_case is None:
            check.notes.append("no golden record")
        elif settings_note:
            check.notes.append(settings_note)
        if g is None or n is None:
            if golden_case is not None:
                check.notes.append("fold not in the golden record" if g is None
                                   else "fold in the golden record but not run")
            out.append(check)
            continue
        if g["manifest_sha256"] != n["manifest_sha256"]:
            check.notes.append(f"episodes drawn differently (manifest sha256 "
                               f"{g['manifest_sha256'][:10]} -> {n['manifest_sha256'][:10]}: "
                               "sampler, protocol or dataset lists changed)")
        if g.get("weights_sha256") != n.get("weights_sha256"):
            check.notes.append(f"other trained weights (sha256 {str(g.get('weights_sha256'))[:10]}"
                               f" -> {str(n.get('weights_sha256'))[:10]}): training or the "
                               "models it trains changed")
        check.moved = moved_episodes(g["episodes"], n["episodes"])
        out.append(check)
    return out


def _settings_note(golden_case: dict | None, now: dict) -> str | None:
    if golden_case is None or golden_case["settings"] == now["settings"]:
        return None
    old, new = set(golden_case["settings"]), set(now["settings"])
    parts = [f"-{s}" for s in sorted(old - new)] + [f"+{s}" for s in sorted(new - old)]
    return "run settings changed: " + (" ".join(parts) or "same settings, other order")


def moved_episodes(before: list[dict], after: list[dict]) -> list[Moved]:
    """Episodes whose entries differ, matched by index, in index order."""
    old = {e["index"]: e for e in before}
    new = {e["index"]: e for e in after}
    return [Moved(i, old.get(i), new.get(i)) for i in sorted(set(old) | set(new))
            if old.get(i) != new.get(i)]


def failure_message(checks: list[FoldCheck], environment_note: str | None = None,
                    shown: int = 5) -> str:
    """What moved, per method and fold, and how to accept an intended change."""
    failed = [c for c in checks if not c.passed]
    lines = [f"REGRESSION: {len(failed)} fold(s) differ from their golden records."]
    for c in failed:
        head = f"  {c.method} ({c.annotation}) fold {c.fold}"
        if c.moved:
            head += f": {len(c.moved)} of {c.n_episodes} episodes moved"
            if c.miou_golden is not None and c.miou_now is not None:
                head += f", mIoU {c.miou_golden:.2f} -> {c.miou_now:.2f}"
        lines.append(head)
        lines += [f"      {note}" for note in c.notes]
        lines += [f"      episode {m.describe()}" for m in c.moved[:shown]]
        if len(c.moved) > shown:
            lines.append(f"      ... and {len(c.moved) - shown} more episodes")
    if environment_note:
        lines.append(environment_note)
    methods = sorted({c.method for c in failed})
    lines += ["If the change is intended, accept it (rewrites the golden records and shows "
              "the diff; commit them with the change):",
              "  refseg-bench regress --update " + " ".join(f"--method {m}" for m in methods),
              "(or `make regress ARGS=--update`)."]
    return "\n".join(lines)
