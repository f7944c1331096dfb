import pytest

from refseg_bench.config import data_root, folds_of, resolve_config
from refseg_bench.errors import ConfigError
from refseg_bench.protocols import load_protocol, protocol_names


def test_defaults_and_overrides():
    cfg = resolve_config(["shot=5", "method_args.extra=3", "fold=[0,2]"])
    assert cfg.method == "proto" and cfg.dataset == "synthetic" and cfg.shot == 5
    assert cfg.method_args.extra == 3
    assert folds_of(cfg, 4) == [0, 2]
    assert folds_of(resolve_config([]), 4) == [0, 1, 2, 3]


@pytest.mark.parametrize("over,msg", [
    (["shot=0"], "shot must be >= 1"),
    (["batch_size=0"], "batch_size must be >= 1"),
    (["episodes=0"], "episodes must be >= 1"),
    (["annotation=lasso"], "annotation must be one of"),
    (["split=dev"], "split must be"),
    (["shot=two"], "invalid setting"),
])
def test_bad_values_are_clear_errors(over, msg):
    with pytest.raises(ConfigError, match=msg):
        resolve_config(over)


def test_fold_out_of_range():
    with pytest.raises(ConfigError, match="folds 0..3"):
        folds_of(resolve_config(["fold=7"]), 4)


def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("REFSEG_BENCH_DATA", str(tmp_path / "env"))
    assert data_root(resolve_config([])) == tmp_path / "env"
    assert data_root(resolve_config([f"data_root={tmp_path}/cli"])) == tmp_path / "cli"


def test_protocol_presets_load_and_override():
    assert {"hsnet", "pfenet"} <= set(protocol_names())
    p = load_protocol("hsnet").with_overrides({"scoring": {"size": 400}, "episodes": 10})
    assert p.scoring.size == 400 and p.scoring.ignore and p.episodes == 10
    with pytest.raises(ConfigError, match="unknown protocol field"):
        load_protocol("hsnet").with_overrides({"epsiodes": 3})


def _datasets():
    from refseg_bench.registry import DATASETS, load_builtin_entries

    load_builtin_entries()  # the built-in ones; test fakes (``**options``) may be registered too
    return [e.name for e in DATASETS.entries() if e.target.startswith("refseg_bench.")]


@pytest.mark.parametrize("name", _datasets())
def test_misspelt_dataset_option_names_the_valid_keys(name, tmp_path):
    from refseg_bench.config import build_dataset

    cfg = resolve_config([f"dataset={name}", f"dataset_args.root={tmp_path / 'nowhere'}",
                          "dataset_args.bogus_option=1"])
    with pytest.raises(ConfigError, match=f"unknown option 'bogus_option' in dataset_args of "
                                          f"'{name}'; valid keys: .*root"):
        build_dataset(cfg)
    assert not (tmp_path / "nowhere").exists()  # refused before the dataset touched disk


@pytest.mark.parametrize("name,typo,meant", [("pascal5i", "list", "lists"),
                                            ("coco20i", "class_splt", "class_split"),
                                            ("fss1000", "missing_class", "missing_classes"),
                                            ("synthetic", "n_per_clas", "n_per_class")])
def test_misspelt_dataset_option_suggests_the_close_one(name, typo, meant, tmp_path):
    from refseg_bench.config import build_dataset

    cfg = resolve_config([f"dataset={name}", f"dataset_args.root={tmp_path}",
                          f"dataset_args.{typo}=1"])
    with pytest.raises(ConfigError, match=f"'{typo}' \\(did you mean '{meant}'\\?\\)"):
        build_dataset(cfg)


@pytest.mark.parametrize("protocol", protocol_names())
def test_every_preset_sets_only_options_its_datasets_take(protocol):
    from refseg_bench.config import check_options
    from refseg_bench.registry import DATASETS

    for name in _datasets():
        options = load_protocol(protocol).for_dataset(name).dataset_args
        check_options(name, DATASETS.get(name), dict(options))
