"""Typed method options: unknown keys and wrong types are config errors (exit 2 on the
command line) that name the valid keys, for every registered method."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from refseg_bench.errors import ConfigError
from refseg_bench.options import parse_options
from refseg_bench.registry import METHODS, load_builtin_entries


@dataclass(frozen=True)
class Inner:
    steps: int = 3
    rate: float = 0.5


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    flag: bool = False
    maybe: int | None = None
    pair: tuple[float, float] = (0.9, 0.99)
    inner: Inner = field(default_factory=Inner)
    free: dict = field(default_factory=dict)


def test_values_are_typed_and_nested():
    o = parse_options(Outer, {"maybe": 4, "pair": [1, 2], "inner": {"rate": 1},
                              "free": {"a": 1}}, "t")
    assert o.maybe == 4 and o.pair == (1.0, 2.0) and isinstance(o.pair[0], float)
    assert o.inner == Inner(steps=3, rate=1.0) and o.free == {"a": 1}
    assert parse_options(Outer, None, "t") == Outer()


@pytest.mark.parametrize("raw,match", [
    ({"nmae": "y"}, r"'nmae' \(did you mean 'name' or 'maybe'\?\).*valid keys: flag, free"),
    ({"flag": 1}, r"t.flag must be true or false; got 1"),
    ({"maybe": "3"}, r"t.maybe must be an integer; got '3'"),
    ({"maybe": True}, r"t.maybe must be an integer"),
    ({"pair": [1, 2, 3]}, r"t.pair must have 2 items"),
    ({"inner": {"stpes": 1}}, r"'stpes' \(did you mean 'steps'\?\) in t.inner"),
    ({"inner": 5}, r"t.inner must be a mapping"),
])
def test_bad_options_name_the_key(raw, match):
    with pytest.raises(ConfigError, match=match):
        parse_options(Outer, raw, "t")


def test_every_registered_method_refuses_a_misspelt_option():
    load_builtin_entries()
    for name in METHODS.names():
        cls = METHODS.get(name)
        with pytest.raises(ConfigError, match="unknown option 'no_such_option'.*valid keys"):
            cls.from_config({"no_such_option": 1})


@pytest.mark.parametrize("method,arg", [
    ("proto", "method_args.n_bgg=3"), ("persam", "method_args.sizee=tiny"),
    ("persam_f", "method_args.train_iter=3"), ("vrpsam", "method_args.untrainde=true"),
    ("oracle", "method_args.x=1"), ("proto", "method_args.smooth=four"),
])
def test_cli_reports_bad_method_options_in_one_line(method, arg, capsys, tmp_path):
    from refseg_bench.cli import main

    code = main(["run", f"method={method}", arg, f"results_dir={tmp_path}",
                 f"data_root={tmp_path}", "episodes=1",
                 "fold=0", "progress=false"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error:") and "Traceback" not in err
    assert "method_args" in err
