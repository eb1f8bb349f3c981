"""One mechanism that turns config dataclasses into command-line flags and back.

Every component (model, data, optimisation, checkpointing, evaluation) owns a typed
dataclass; its fields' ``metadata["help"]`` become the ``--help`` text, and field
``foo_bar`` becomes flag ``--foo-bar`` (fairseq's spelling). Defaults live only in the
dataclass. Booleans get ``--flag/--no-flag``.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import types
import typing
from typing import Any, Literal, TypeVar

T = TypeVar("T")


def field(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field with help text (the only place a default is written)."""
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={"help": help, **kw})
    return dataclasses.field(default=default, metadata={"help": help, **kw})


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _is_tuple(tp: Any) -> bool:
    return tp is tuple or typing.get_origin(tp) is tuple


def _parse_tuple(text: str) -> tuple:
    """Accept fairseq's '(0.9, 0.98)' as well as '0.9,0.98'."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise argparse.ArgumentTypeError(f"expected a tuple such as '(0.9, 0.98)', got {text!r}")
    if isinstance(value, (int, float)):
        value = (value,)
    return tuple(float(v) for v in value)


def _none_or(convert):
    def parse(text: str):
        return None if text.lower() == "none" else convert(text)

    parse.__name__ = getattr(convert, "__name__", "value")
    return parse


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, group_title: str | None = None,
                       skip: tuple[str, ...] = (), suppress_defaults: bool = False) -> None:
    """Add one flag per field of ``cls``.

    With ``suppress_defaults`` an absent flag leaves no attribute, so callers can tell what the
    user set explicitly (e.g. to layer ``--arch`` defaults under explicit model flags).
    """
    group = parser.add_argument_group(group_title or cls.__name__)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or f.metadata.get("cli") is False:
            continue
        flag = "--" + f.name.replace("_", "-")
        tp, optional = _unwrap_optional(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        help_text = f.metadata.get("help", "")
        if suppress_defaults:
            help_text += f" (default: {default!r}, or the --arch value)"
            default = argparse.SUPPRESS
        names = [flag, *f.metadata.get("aliases", ())]
        if tp is bool and f.name.startswith("no_"):  # --no-x is already the switch; --no-no-x would be silly
            group.add_argument(*names, dest=f.name, action="store_true", default=default, help=help_text)
        elif tp is bool:
            group.add_argument(*names, dest=f.name, action=argparse.BooleanOptionalAction, default=default,
                               help=help_text)
        elif typing.get_origin(tp) is Literal:
            choices = list(typing.get_args(tp))
            group.add_argument(*names, dest=f.name, choices=choices, default=default, help=help_text)
        elif _is_tuple(tp):
            group.add_argument(*names, dest=f.name, type=_parse_tuple, default=default, help=help_text)
        else:
            convert = _none_or(tp) if optional else tp
            group.add_argument(*names, dest=f.name, type=convert, default=default, help=help_text,
                               metavar=f.name.upper())


def from_args(cls: type[T], args: argparse.Namespace, **overrides: Any) -> T:
    """Build ``cls`` from the parsed flags that belong to it."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    values.update(overrides)
    return cls(**values)


def to_dict(cfg: Any) -> dict:
    """A JSON-safe dict of a config (tuples become lists)."""
    return json_safe(dataclasses.asdict(cfg))


def json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def from_dict(cls: type[T], values: dict) -> T:
    """Inverse of :func:`to_dict`; unknown keys are an error so a stale config is noticed."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown config keys {sorted(unknown)}")
    fixed = {}
    for k, v in values.items():
        tp, _ = _unwrap_optional(hints[k])
        fixed[k] = tuple(v) if _is_tuple(tp) and v is not None else v
    return cls(**fixed)
