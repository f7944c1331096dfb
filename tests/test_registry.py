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


def test_methods_and_datasets_are_not_top_level_packages():
    import refseg_bench.datasets
    import refseg_bench.methods

    assert refseg_bench.datasets.__name__ == "refseg_bench.datasets"
    with pytest.raises(ModuleNotFoundError):
        __import__("methods")
