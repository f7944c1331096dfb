"""Run records and leaderboards say whether the episodes were exact replays."""

from __future__ import annotations

import json

from replicas import voc_identified

from refseg_bench.config import resolve_config
from refseg_bench.leaderboard import write
from refseg_bench.runner import run


def test_summary_and_leaderboard_carry_the_episode_kind(tmp_path):
    rep = voc_identified(tmp_path / "voc")
    common = [f"results_dir={tmp_path / 'results'}", "progress=false", "method=oracle",
              "dataset=pascal5i", "protocol=pfenet", "fold=0", "episodes=6",
              f"dataset_args.root={rep['root']}", f"dataset_args.val_pool={rep['data_list']}",
              f"dataset_args.cache_dir={tmp_path / 'cache'}"]
    exact = run(resolve_config([*common, "protocol_args.exact=true"]))
    rules = run(resolve_config(common))
    assert exact["run_id"] != rules["run_id"]
    assert exact["episode_kind"] == "exact, lists differ"  # a replica, not PFENet's lists
    unit = exact["units"][0]
    assert unit["replay"]["code"] == "pfenet" and unit["replay"]["workers"] == 8
    assert "differ from FSSAM" in unit["replay"]["lists_check"]
    assert exact["protocol"]["exact"] is True and exact["mean_miou"] == 100.0
    assert rules["episode_kind"] == "rule-equivalent" and rules["units"][0]["replay"] is None
    manifest = json.loads((tmp_path / "results" / exact["run_id"] / "seed321_fold0" /
                           "manifest.json").read_text())
    assert manifest["header"]["sampler"] == "official replay (pfenet)"
    board = write(tmp_path / "results")
    kinds = dict(zip(board["run_id"], board["episode_kind"], strict=True))
    assert kinds == {exact["run_id"]: "exact, lists differ", rules["run_id"]: "rule-equivalent"}
    assert "episode_kind" in (tmp_path / "results" / "leaderboard.md").read_text()
