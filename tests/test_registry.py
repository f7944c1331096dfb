import subprocess
import sys

import pytest

from refseg_bench.registry import Registry, UnknownNameError


def test_register_get_and_refuse_duplicates():
    r = Registry("widget")
    r.register("path", "pathlib:Path", "a path")
    from pathlib import Path

    assert r.get("path") is Path
    assert r.names() == ["path"]
    with pytest.raises(ValueError, match="already registered"):
        r.register("path", "pathlib:PurePath")
    with pytest.raises(ValueError, match="module:Attribute"):
        r.register("bad", "pathlib.Path")


def test_unknown_name_lists_known_and_close_matches():
    r = Registry("widget")
    r.register("persam", "pathlib:Path")
    r.register("persam_f", "pathlib:Path")
    with pytest.raises(UnknownNameError) as err:
        r.entry("persm")
    msg = str(err.value)
    assert "Did you mean persam" in msg and "Known widgets: persam, persam_f" in msg


def test_listing_imports_no_heavy_backend():
    code = (
        "import sys; from refseg_bench.cli import main; main(['ls']);"
        "heavy = [m for m in ('torch', 'segment_anything', 'sam2', 'diffusers')"
        " if m in sys.modules];"
        "print('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout


def test_methods_and_datasets_are_not_top_level_packages(tmp_path):
    # From a neutral directory (tests/ has its own `methods` folder), as a user's process.
    code = ("import importlib.util as u, refseg_bench.datasets as d;"
            "print(d.__name__, u.find_spec('datasets'), u.find_spec('methods'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=tmp_path)
    assert out.stdout.split() == ["refseg_bench.datasets", "None", "None"]
