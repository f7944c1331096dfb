"""Bad input through the whole harness: each case is a clear error (exit 2, no traceback,
the file or value named) or a recorded, counted skip; never a silently changed number."""

import shutil
import subprocess
import sys

import numpy as np
import pytest
from fakes import register_fakes
from PIL import Image

from refseg_bench.config import resolve_config
from refseg_bench.datasets.base import DatasetError
from refseg_bench.runner import run
from refseg_bench.sampler import SamplingError

register_fakes()


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "refseg_bench", *args], capture_output=True,
                          text=True, timeout=300, check=False)


@pytest.fixture
def synthetic_copy(synthetic_root, tmp_path):
    """A private copy of the synthetic benchmark that a test may damage."""
    root = tmp_path / "synthetic"
    shutil.copytree(synthetic_root, root)
    return root


def _overrides(root, results):
    return [f"dataset_args.root={root}", f"results_dir={results}", "progress=false", "fold=0",
            "episodes=3", "method=oracle"]


def test_missing_dataset_root_prints_expected_layout(tmp_path):
    r = _cli("run", "dataset=pascal5i", f"dataset_args.root={tmp_path}/nowhere",
             f"results_dir={tmp_path}/r", "episodes=5", "fold=0")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "nowhere" in r.stderr and "JPEGImages" in r.stderr


def test_shot_larger_than_class_is_a_clear_error(tmp_path):
    with pytest.raises(SamplingError, match="needs"):
        run(resolve_config(["dataset=fake", "shot=50", "fold=0", "episodes=5",
                            "protocol=pfenet", f"results_dir={tmp_path}", "progress=false"]))


def test_corrupt_image_names_the_file(synthetic_copy, tmp_path):
    from refseg_bench.sampler import Manifest

    over = _overrides(synthetic_copy, tmp_path / "r")
    run(resolve_config(over))  # healthy first: writes the manifest and finishes
    manifest = Manifest.read(next((tmp_path / "r").glob("*/seed0_fold0/manifest.json")))
    item = manifest.episodes[0].query
    jpg = synthetic_copy / "v1" / "JPEGImages" / f"{item}.jpg"
    jpg.write_bytes(jpg.read_bytes()[:200])  # truncated
    for workers in (0, 2):  # raised as itself from a loader worker, not wrapped in its text
        with pytest.raises(DatasetError, match=f"{item}.jpg") as err:
            run(resolve_config([*over, "overwrite=true", f"num_workers={workers}"]))
        assert "worker" not in str(err.value) and "Traceback" not in str(err.value)


def test_mask_and_image_size_mismatch_is_a_clear_error(synthetic_copy, tmp_path):
    from refseg_bench.sampler import Manifest

    over = _overrides(synthetic_copy, tmp_path / "r")
    run(resolve_config(over))
    manifest = Manifest.read(next((tmp_path / "r").glob("*/seed0_fold0/manifest.json")))
    item = manifest.episodes[0].query
    png = synthetic_copy / "v1" / "SegmentationClass" / f"{item}.png"
    label = np.asarray(Image.open(png))
    Image.fromarray(label[:-7, :-5]).save(png)
    with pytest.raises(DatasetError, match="its mask is"):
        run(resolve_config([*over, "overwrite=true"]))

