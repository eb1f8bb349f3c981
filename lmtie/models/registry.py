"""Model families and their named sizes (``--arch``), looked up by name.

A family is a :class:`~lmtie.models.base.LanguageModel` subclass registered with
``@register_model("name")``; its config dataclass gives the command-line flags, and its presets
are ``@register_arch("arch_name", "family")`` functions returning field overrides. Checkpoints
record the family's name (``config["model_family"]``); loading looks it up here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

from lmtie.errors import UserError
from lmtie.models.base import LanguageModel

DEFAULT_FAMILY = "transformer_lm"  # what a checkpoint without "model_family" holds (lmtie 0.1)


@dataclass(frozen=True)
class Family:
    name: str
    model_class: type[LanguageModel]

    @property
    def config_class(self) -> type:
        return self.model_class.config_class


FAMILIES: dict[str, Family] = {}
ARCHS: dict[str, tuple[str, Callable[[], dict]]] = {}  # arch -> (family, overrides)


def register_model(name: str):
    """Class decorator: make a LanguageModel subclass a family named ``name``."""

    def wrap(cls: type[LanguageModel]) -> type[LanguageModel]:
        if name in FAMILIES and FAMILIES[name].model_class is not cls:
            raise ValueError(f"model family {name!r} is already registered")
        cls.family = name
        FAMILIES[name] = Family(name, cls)
        return cls

    return wrap


def register_arch(name: str, family: str):
    """Function decorator: ``--arch name`` sets the fields the function returns, in ``family``."""

    def wrap(fn: Callable[[], dict]) -> Callable[[], dict]:
        if name in ARCHS:
            raise ValueError(f"--arch {name!r} is already registered")
        ARCHS[name] = (family, fn)
        return fn

    return wrap


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise UserError(f"model family {name!r} is unknown; known families: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[name]


def family_of_config(cfg) -> Family:
    """The family whose config dataclass ``cfg`` is."""
    for family in FAMILIES.values():
        if type(cfg) is family.config_class:
            return family
    raise ValueError(f"{type(cfg).__name__} is no registered family's config")


def family_of_arch(arch: str) -> Family:
    if arch not in ARCHS:
        raise UserError(f"--arch {arch!r} is unknown; choose one of {', '.join(sorted(ARCHS))}")
    return get_family(ARCHS[arch][0])


def arch_overrides(arch: str) -> dict:
    """The field values that ``--arch`` sets; unknown names list the known ones."""
    family_of_arch(arch)
    return ARCHS[arch][1]()


def archs_of(family: str) -> list[str]:
    return sorted(a for a, (f, _) in ARCHS.items() if f == family)


def build_config(arch: str, **overrides):
    """``--arch`` defaults, then explicit overrides, as the family's config dataclass."""
    return family_of_arch(arch).config_class(**{**arch_overrides(arch), **overrides})


def config_fields(family: str) -> list[str]:
    return [f.name for f in dataclasses.fields(get_family(family).config_class)]


def build_model(family: str, cfg, dictionary=None) -> LanguageModel:
    """The model of ``cfg`` in ``family`` (sized to ``dictionary`` if given), its tie checked."""
    model = get_family(family).model_class.build(cfg, dictionary)
    model.check_tie()
    return model
