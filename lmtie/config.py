"""One mechanism that turns config dataclasses into command-line flags and back.

Every component (model, data, optimisation, checkpointing, evaluation) owns a typed
dataclass; its fields' ``metadata["help"]`` become the ``--help`` text, and field
``foo_bar`` becomes flag ``--foo-bar`` (fairseq's spelling). Defaults live only in the
dataclass. Booleans get ``--flag/--no-flag``.

Ranges live in the same place: ``field(0.1, "dropout", min=0, lt=1)``. Every config dataclass
calls :func:`validate_ranges` from ``__post_init__``, so a value out of range (from a flag, from
Python or from a checkpoint's JSON) is a one-line :class:`~lmtie.errors.UserError` naming the
flag, before anything is built or written. Float fields must also be finite unless they say
``finite=False``.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import math
import types
import typing
from typing import Any, Literal, TypeVar

from lmtie.errors import UserError

T = TypeVar("T")

# sanity bounds for sizes, far beyond any model this code trains: a width of 10**12 or 10**11
# positions is a typo or a hostile file, refused in one line instead of an allocation of terabytes
MAX_WIDTH = 2**20
MAX_LAYERS = 2**12
MAX_POSITIONS = 2**24
MAX_VOCAB = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class Range:
    """Bounds of a numeric field (of each element of a tuple field): ``min``/``max`` inclusive,
    ``gt``/``lt`` exclusive; floats must be finite unless ``finite`` is False."""

    min: float | None = None
    max: float | None = None
    gt: float | None = None
    lt: float | None = None
    finite: bool = True

    def violation(self, v: float) -> str | None:
        """Why ``v`` is out of range, or None."""
        if isinstance(v, float) and self.finite and not math.isfinite(v):
            return "must be a finite number"
        lo_ok = (self.min is None or v >= self.min) and (self.gt is None or v > self.gt)
        hi_ok = (self.max is None or v <= self.max) and (self.lt is None or v < self.lt)
        if lo_ok and hi_ok:
            return None
        lo = f">= {_num(self.min)}" if self.min is not None else f"> {_num(self.gt)}" if self.gt is not None else None
        hi = f"<= {_num(self.max)}" if self.max is not None else f"< {_num(self.lt)}" if self.lt is not None else None
        if lo and hi and (self.max if self.max is not None else self.lt) <= 1:  # a fraction: show the interval
            left = f"[{_num(self.min)}" if self.min is not None else f"({_num(self.gt)}"
            right = f"{_num(self.max)}]" if self.max is not None else f"{_num(self.lt)})"
            return f"must be in {left}, {right}"
        return f"must be {lo if not lo_ok else hi}"


def _num(x: Any) -> str:
    return str(int(x)) if isinstance(x, float) and x.is_integer() else str(x)


def field(default: Any, help: str, *, min: float | None = None, max: float | None = None,
          gt: float | None = None, lt: float | None = None, finite: bool = True, **kw: Any) -> Any:
    """A dataclass field with help text (the only place a default is written) and, for numbers,
    its range (checked by :func:`validate_ranges`)."""
    meta = {"help": help, "range": Range(min, max, gt, lt, finite), **kw}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def flag_name(f: dataclasses.Field) -> str:
    """``--foo-bar`` for field ``foo_bar`` (the field's own name when it has no flag)."""
    return f.name if f.metadata.get("cli") is False else "--" + f.name.replace("_", "-")


def _is_number(v: Any, tp: Any) -> bool:
    if isinstance(v, bool):
        return False
    return isinstance(v, int) if tp is int else isinstance(v, (int, float))


def validate_ranges(cfg: Any) -> None:
    """Refuse a numeric field of ``cfg`` that is not a number of its type or is outside its range;
    the message names the flag, the value and the range (``--lr -1.0: must be >= 0``)."""
    hints = _hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        tp, optional = _unwrap_optional(hints[f.name])
        if value is None and optional:
            continue
        rng: Range = f.metadata.get("range") or Range()
        if _is_tuple(tp):
            if not isinstance(value, (tuple, list)) or not all(_is_number(v, float) for v in value):
                raise UserError(f"{flag_name(f)} {value!r}: must be numbers such as '(0.9, 0.98)'")
            length = f.metadata.get("length")
            if length is not None and len(value) != length:
                raise UserError(f"{flag_name(f)} {_show(value)}: must be {length} numbers")
            bad = next((why for why in map(rng.violation, value) if why), None)
            if bad:
                raise UserError(f"{flag_name(f)} {_show(value)}: each value {bad}")
        elif tp in (int, float):
            if not _is_number(value, tp):
                kind = "an integer" if tp is int else "a number"
                raise UserError(f"{flag_name(f)} {value!r}: must be {kind}")
            why = rng.violation(value)
            if why:
                raise UserError(f"{flag_name(f)} {value}: {why}")


def _show(value: Any) -> str:
    return "(" + ", ".join(str(v) for v in value) + ")"


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
    """Inverse of :func:`to_dict`; unknown keys are an error so a stale config is noticed, and so is a
    value of the wrong JSON type (ValueError); ranges are the class's own check (UserError)."""
    if not isinstance(values, dict):
        raise ValueError(f"{cls.__name__}: expected a JSON object, got {type(values).__name__}")
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown config keys {sorted(unknown)}")
    fixed = {}
    for k, v in values.items():
        tp, optional = _unwrap_optional(hints[k])
        if v is None and not optional:
            raise ValueError(f"{cls.__name__}.{k}: null is not allowed")
        if v is not None:
            _check_json_type(cls, k, tp, v)
        fixed[k] = tuple(v) if _is_tuple(tp) and v is not None else v
    return cls(**fixed)


def _check_json_type(cls: type, name: str, tp: Any, v: Any) -> None:
    """Non-numeric fields: the JSON value has the field's type (numbers are :func:`validate_ranges`' job)."""
    where = f"{cls.__name__}.{name}"
    if tp is bool and not isinstance(v, bool):
        raise ValueError(f"{where}: expected true or false, got {v!r}")
    if tp is str and not isinstance(v, str):
        raise ValueError(f"{where}: expected a string, got {v!r}")
    if typing.get_origin(tp) is Literal and v not in typing.get_args(tp):
        raise ValueError(f"{where}: {v!r} is not one of {', '.join(map(repr, typing.get_args(tp)))}")
    if _is_tuple(tp) and not isinstance(v, list):
        raise ValueError(f"{where}: expected a list, got {v!r}")
