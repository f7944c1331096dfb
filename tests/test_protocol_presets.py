import numpy as np
import pytest

from refseg_bench.protocols import load_protocol, protocol_names
from refseg_bench.registry import DATASETS, load_builtin_entries
from refseg_bench.sampler import SAMPLERS

REAL_DATASETS = ["pascal5i", "coco20i", "fss1000", "lvis92i", "deepglobe", "isic2018",
                 "chestxray", "perseg"]


def test_presets_exist_with_descriptions():
    names = protocol_names()
    for want in ("hsnet", "pfenet", "bam", "fssam", "vrp-sam", "matcher", "patnet-cdfss",
                 "persam"):
        assert want in names
    for name in names:
        assert len(load_protocol(name).description) > 40


def test_bam_seeds_are_drawn_as_bam_does():
    legacy = np.random.RandomState(123)  # BAM test.py: setup_seed(123); randint(0, 1000, 5)
    assert list(load_protocol("bam").seeds) == list(legacy.randint(0, 1000, 5))
    assert load_protocol("bam").seeds == (510, 365, 382, 322, 988)


@pytest.mark.parametrize("name, dataset, sampler, episodes, size", [
    ("hsnet", "pascal5i", "pair_cycle", 1000, None),
    ("hsnet", "coco20i", "class_uniform", 1000, None),
    ("hsnet", "fss1000", "every_image", 2400, 400),
    ("hsnet", "lvis92i", "round_robin", 2300, None),
    ("matcher", "coco20i", "class_uniform", 1000, 518),
    ("matcher", "lvis92i", "round_robin", 2300, 518),
    ("vrp-sam", "coco20i", "class_uniform", 1000, 512),
    ("vrp-sam", "pascal5i", "file_order", 1000, 512),
    ("fssam", "pascal5i", "file_order", 1000, None),
    ("patnet-cdfss", "deepglobe", "round_robin", 600, 400),
    ("patnet-cdfss", "fss1000", "every_image", 2400, 400),
    ("persam", "perseg", "fixed_reference", 100000, None),
])
def test_family_rules_per_dataset(name, dataset, sampler, episodes, size):
    p = load_protocol(name).for_dataset(dataset)
    assert (p.sampler, p.episodes, p.scoring.size) == (sampler, episodes, size)


def test_hsnet_scores_fss1000_on_the_400_pixel_label_as_hsnet_does():
    """hsnet data/fss.py resizes the query label to the 400x400 input unconditionally (unlike
    its PASCAL and COCO loaders): the preset keeps original-size scoring elsewhere but not
    there, says so, and a command-line override still wins."""
    hsnet = load_protocol("hsnet")
    assert hsnet.scoring.size is None
    fss = hsnet.for_dataset("fss1000")
    assert (fss.scoring.size, fss.scoring.ignore) == (400, True)
    assert fss.with_overrides({"scoring": {"size": None}}).scoring.size is None
    for other in ("pascal5i", "coco20i", "lvis92i"):
        assert hsnet.for_dataset(other).scoring.size is None
    assert "FSS-1000, scored on the 400x400 label" in " ".join(hsnet.description.split())


def test_multi_seed_presets():
    assert len(load_protocol("patnet-cdfss").seeds) == 5
    assert load_protocol("vrp-sam").seed == load_protocol("fssam").seed == 321


@pytest.mark.parametrize("name", protocol_names())
def test_dataset_args_are_real_options_and_samplers_exist(name, tmp_path):
    load_builtin_entries()
    p = load_protocol(name)
    assert p.sampler in SAMPLERS
    for dataset in REAL_DATASETS:
        q = p.for_dataset(dataset)
        assert q.sampler in SAMPLERS
        DATASETS.get(dataset)(tmp_path, **q.dataset_args)  # unknown option -> TypeError
