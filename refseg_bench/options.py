"""Typed option parsing: every method (and its nested sections) declares its options as a
dataclass, and :func:`parse_options` turns the raw ``method_args`` mapping into it.

An unknown key or a value of the wrong type is a :class:`~refseg_bench.errors.ConfigError`
(exit 2 on the command line) that names the key, the value, the expected type and the
valid keys, with close matches for a misspelling. Nothing is silently ignored or coerced
in a way that could change a number: ``"3"`` is not an int, ``1`` is a float, a bool is
never an int.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from refseg_bench.errors import ConfigError

T = TypeVar("T")


def unknown_keys_error(unknown: list[str], known: list[str], where: str) -> ConfigError:
    """The error for misspelt keys: each with its close matches, then every valid key."""
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, known, n=2)
        hints.append(f"{key!r}" + (f" (did you mean {' or '.join(map(repr, close))}?)"
                                   if close else ""))
    return ConfigError(f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(hints)} "
                       f"in {where}; valid keys: {', '.join(sorted(known))}")


def parse_options(cls: type[T], raw: dict | None, where: str) -> T:
    """Build dataclass ``cls`` from ``raw`` (a plain mapping, e.g. from OmegaConf), checking
    every key and value. ``where`` names the section in messages (``method_args`` of
    ``vrpsam``...). Nested dataclass fields are parsed recursively from mappings."""
    raw = dict(raw or {})
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise unknown_keys_error(unknown, known, where)
    hints = typing.get_type_hints(cls)
    values = {name: _check(value, hints[name], f"{where}.{name}")
              for name, value in raw.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:  # __post_init__ range checks
        raise ConfigError(f"{where}: {err}") from err


def _check(value: Any, tp: Any, where: str) -> Any:
    """``value`` converted to ``tp`` where that is lossless (list -> tuple, int -> float),
    else ConfigError."""
    if tp is Any:
        return value
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in get_args(tp):
            return None
        errors = []
        for option in (a for a in get_args(tp) if a is not type(None)):
            try:
                return _check(value, option, where)
            except ConfigError as err:
                errors.append(err)
        raise errors[0]
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{where} must be one of {', '.join(map(repr, get_args(tp)))}; "
                              f"got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise _type_error(value, "a mapping", where)
        return parse_options(tp, value, where)
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise _type_error(value, "a list", where)
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where} must have {len(args)} items; got {list(value)!r}")
            items = [_check(v, a, f"{where}[{i}]")
                     for i, (v, a) in enumerate(zip(value, args, strict=True))]
        else:
            item = args[0] if args else Any
            items = [_check(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise _type_error(value, "a mapping", where)
        return dict(value)
    return _scalar(value, tp, where)


def _scalar(value: Any, tp: Any, where: str) -> Any:
    if tp is bool:
        if not isinstance(value, bool):
            raise _type_error(value, "true or false", where)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(value, "an integer", where)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _type_error(value, "a number", where)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _type_error(value, "a string", where)
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise _type_error(value, tp.__name__, where)
    return value


def _type_error(value: Any, expected: str, where: str) -> ConfigError:
    return ConfigError(f"{where} must be {expected}; got {value!r} ({type(value).__name__})")


def options_dict(opts: Any) -> dict:
    """A JSON-ready dict of an options dataclass (tuples become lists), for run records."""
    def plain(v):
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return {k: plain(v) for k, v in dataclasses.asdict(opts).items()}


def check_bounds(opts: Any, at_least_one: tuple[str, ...] = (),
                 at_least_zero: tuple[str, ...] = ()) -> None:
    """Raise ``ValueError`` naming every option of ``opts`` below its bound (for a frozen
    options dataclass's ``__post_init__``)."""
    bad = [f"{name} must be >= 1 (got {getattr(opts, name)})" for name in at_least_one
           if getattr(opts, name) < 1]
    bad += [f"{name} must be >= 0 (got {getattr(opts, name)})" for name in at_least_zero
            if getattr(opts, name) < 0]
    if bad:
        raise ValueError("; ".join(bad))
