"""Weight trust: one rule decides what a number rests on, from checkpoint loading through
method provenance to the leaderboard's tables."""

from __future__ import annotations

import json

import pytest
import torch

from refseg_bench import trust
from refseg_bench.models import checkpoints


def test_combine_takes_the_least_trusted_part():
    assert trust.combine("official", "trained") == "trained"
    assert trust.combine("official", "unverified", "trained") == "unverified"
    assert trust.combine("official", "random") == "random"
    assert trust.combine("none", "official") == "official"
    assert trust.combine("none") == "none" and trust.combine() == "none"
    with pytest.raises(ValueError, match="weights kind"):
        trust.combine("verified")


def test_sections():
    assert [trust.section(k) for k in ("official", "trained", "none")] == ["results"] * 3
    assert trust.section("unverified") == "unverified" and trust.section("random") == "random"


@pytest.fixture
def published(monkeypatch, tmp_path):
    """A tiny module saved to a file whose sha256 the catalogue publishes (under another
    file name than the one saved), and one whose hash nobody publishes."""
    net = torch.nn.Linear(3, 2)
    good, other = tmp_path / "renamed.pt", tmp_path / "other.pt"
    torch.save(net.state_dict(), good)
    torch.save(torch.nn.Linear(3, 2).state_dict(), other)
    entries = dict(checkpoints.catalogue())
    entries["tiny_linear"] = checkpoints.CatalogueEntry(
        name="tiny_linear", family="test", variant="linear", url="http://127.0.0.1/x",
        file_name="tiny_linear.pt", sha256=checkpoints.sha256_file(good), size=None,
        licence="-", sha256_source="test")
    monkeypatch.setattr(checkpoints, "catalogue", lambda: entries)
    return net, good, other


def test_official_only_on_a_published_hash(published):
    net, good, other = published
    info = checkpoints.load_checkpoint_into(torch.nn.Linear(3, 2), good, model="lin")
    assert info.weights == "official" and info.catalogue_name == "tiny_linear"
    info = checkpoints.load_checkpoint_into(torch.nn.Linear(3, 2), other, model="lin")
    assert info.weights == "unverified" and "not in the checkpoint catalogue" in info.note
    assert trust.file_kind(checkpoints.sha256_file(good)) == ("official", "tiny_linear")


def test_leaderboard_keeps_unverified_and_random_rows_apart(tmp_path):
    from refseg_bench import leaderboard

    def record(run_id, method, weights, miou):
        d = tmp_path / run_id
        d.mkdir()
        proto = {"name": "hsnet", "scoring": {"size": None, "ignore": True}}
        (d / "summary.json").write_text(json.dumps({
            "complete": True, "run_id": run_id, "method": method, "dataset": "synthetic",
            "protocol": proto, "split": "val", "shot": 1, "annotation": "mask",
            "folds": {"0": {"miou": miou}}, "mean_miou": miou, "mean_fbiou": 50.0,
            "units": [{"n_scored": 10, "n_skipped": 0}], "seeds": [0],
            "method_info": {"model": method, "weights": weights}}))

    record("a", "proto", "none", 40.0)
    record("b", "vrpsam", "trained", 60.0)
    record("c", "vrpsam", "unverified", 70.0)
    record("d", "persam", "random", 10.0)
    df = leaderboard.build(tmp_path)
    assert dict(zip(df["run_id"], df["section"], strict=True)) == {
        "a": "results", "b": "results", "c": "unverified", "d": "random"}
    md = leaderboard.to_markdown(df)
    results, rest = md.split("## Unverified weights")
    unverified, random = rest.split("## Random weights")
    assert "| proto |" in results and "| trained |" in results and "unverified" not in results
    assert "| unverified |" in unverified and "| random |" in random
