import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "datasets"))
from replica_layouts import make_fss, make_pascal

from refseg_bench.cli import main
from refseg_bench.commands.data import split_summary
from refseg_bench.datasets.pascal import Pascal5i


@pytest.fixture(scope="module")
def pascal(tmp_path_factory):
    return make_pascal(tmp_path_factory.mktemp("pascal"))


def test_prepare_writes_cache_under_the_root_and_prints_counts(pascal, capsys):
    rc = main(["data", "prepare", "pascal5i", "--root", str(pascal.root),
               f"dataset_args.split_files={pascal.extra['split_files']}"])
    out = capsys.readouterr()
    assert rc == 0
    cache = pascal.root / ".refseg-bench" / "pascal5i"  # <root>/.refseg-bench
    assert len(list(cache.glob("lists-*/fold*-*.json"))) == 8
    assert "(image, class) pairs" in out.out and "wrote 8 list files" in out.err


def test_inspect_counts_match_the_lists(pascal, capsys):
    rc = main(["data", "inspect", "pascal5i", "--root", str(pascal.root), "--protocol", "bam",
               f"dataset_args.train_pool={pascal.extra['train_pool']}"])
    out = capsys.readouterr().out
    assert rc == 0 and "train_filter=bam" in out and "lists=pfenet" in out
    ds = Pascal5i(pascal.root, lists="pfenet", train_filter="bam",
                  train_pool=pascal.extra["train_pool"])
    s = split_summary(ds, 2, "val")
    assert (s.classes, s.images) == (5, len(ds.query_items(2, "val")))
    assert s.pairs == sum(len(ds.items(2, "val", c)) for c in ds.classes(2, "val"))
    assert s.per_class_min <= s.per_class_median <= s.per_class_max
    assert re.search(rf"│\s+2 │ val\s+│\s+5 │\s+{s.images} │\s+{s.pairs} │", out)


def test_data_root_from_environment(tmp_path, monkeypatch, capsys):
    make_fss(tmp_path, ["apple", "basketball"], sub="")  # -> tmp_path/fss/<class>/
    (tmp_path / "fss").rename(tmp_path / "fss1000")
    monkeypatch.setenv("REFSEG_BENCH_DATA", str(tmp_path))
    rc = main(["data", "inspect", "fss1000", "dataset_args.missing_classes=skip"])
    assert rc == 0 and str(tmp_path / "fss1000") in capsys.readouterr().out


def test_wrong_root_prints_the_expected_layout(tmp_path, capsys):
    rc = main(["data", "inspect", "coco20i", "--root", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err
    assert rc == 2 and "Expected layout" in err and "instances_train2014.json" in err


def test_unknown_dataset(capsys):
    assert main(["data", "inspect", "pascal"]) == 2
    assert "Did you mean pascal5i" in capsys.readouterr().err
