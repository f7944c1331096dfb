"""``refseg-bench episodes``: manifests as JSON lines, on the synthetic benchmark and on
replicas of the PASCAL layout (rule-equivalent and exact replays)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "replay"))
from replicas import voc_for_hsnet_lists, voc_identified

from refseg_bench.cli import main
from refseg_bench.datasets.synthetic import SyntheticDataset
from refseg_bench.protocols import resolve_protocol
from refseg_bench.sampler import sample_episodes


def _lines(capsys) -> tuple[list[dict], str]:
    out, err = capsys.readouterr()
    return [json.loads(line) for line in out.splitlines()], err


def test_synthetic_prints_the_run_manifest(synthetic_root, capsys):
    assert main(["episodes", "synthetic", "--fold", "1", "--shot", "2", "episodes=7",
                 f"dataset_args.root={synthetic_root}"]) == 0
    rows, err = _lines(capsys)
    want = sample_episodes(SyntheticDataset(synthetic_root), 1, "val", 2, 7, 0,
                           resolve_protocol("hsnet", "synthetic"))
    assert [{k: r[k] for k in ("index", "fold", "class_id", "query", "supports", "seed")}
            for r in rows] == [e.to_row() for e in want.episodes]
    assert all(r["sampling_seed"] == 0 and r["class_name"] for r in rows)
    assert "7 episodes, rule-equivalent" in err and want.sha256 in err


def test_exact_on_synthetic_is_refused_with_the_reason(synthetic_root, capsys):
    code = main(["episodes", "synthetic", "--exact", f"dataset_args.root={synthetic_root}"])
    assert code == 2
    assert "no official episodes on synthetic" in capsys.readouterr().err


@pytest.fixture(scope="module")
def shipped_voc(tmp_path_factory):
    return voc_for_hsnet_lists(tmp_path_factory.mktemp("voc"))


def test_exact_hsnet_on_a_replica_of_the_shipped_lists(shipped_voc, capsys, tmp_path):
    args = ["episodes", "pascal5i", "--protocol", "hsnet", "--fold", "all", "--shot", "5",
            "--exact", "episodes=2", f"dataset_args.root={shipped_voc}",
            f"dataset_args.cache_dir={tmp_path}"]
    assert main(args) == 0
    rows, err = _lines(capsys)
    assert [(r["fold"], r["index"]) for r in rows] == [(f, i) for f in range(4) for i in (0, 1)]
    # episode 0 of fold 1, 5-shot, as hsnet's own loader draws it (np.random.seed(0))
    assert (rows[2]["class_id"], rows[2]["query"], rows[2]["supports"]) == \
        (9, "2007_000452", ["2008_000107", "2007_008106", "2010_001699", "2011_000813",
                            "2010_004825"])
    assert err.count("2 episodes, exact, manifest") == 4


def test_exact_bam_prints_every_seed_and_says_the_lists_differ(tmp_path, capsys):
    rep = voc_identified(tmp_path / "voc")
    assert main(["episodes", "pascal5i", "--protocol", "bam", "--exact", "--shot", "1",
                 f"dataset_args.root={rep['root']}", f"dataset_args.val_pool={rep['data_list']}",
                 f"dataset_args.cache_dir={tmp_path / 'cache'}", "episodes=3"]) == 0
    rows, err = _lines(capsys)
    assert [r["sampling_seed"] for r in rows] == [s for s in (510, 365, 382, 322, 988)
                                                  for _ in range(3)]
    assert err.count("exact, lists differ") == 5


def test_bad_settings_are_user_errors(capsys):
    assert main(["episodes", "synthetic", "--protocol", "nope"]) == 2
    assert "unknown protocol" in capsys.readouterr().err


def test_ls_protocols_says_where_exact_replays_are_impossible(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # one table row per line
    assert main(["ls", "protocols"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "exact replay" in out and "not lvis92i" in out and "lvis_val.pkl" in out
    assert "none: episodes follow the rules only" in out  # persam
