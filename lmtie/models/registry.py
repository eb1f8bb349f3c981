"""Model families and their named sizes (``--arch``), looked up by name.

A family is a :class:`~lmtie.models.base.LanguageModel` subclass (or an encoder-decoder
:class:`~lmtie.models.seq2seq.EncoderDecoderModel`) registered with ``@register_model("name", task=...)``;
the task says what it models (``families_for(task)``). Its config dataclass gives the command-line
flags, and its presets are ``@register_arch("arch_name", "family")`` functions returning field overrides. Checkpoints
record the family's name (``config["model_family"]``); loading looks it up here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

from lmtie.errors import UserError
from lmtie.models.base import TokenModel

DEFAULT_FAMILY = "transformer_lm"  # what a checkpoint without "model_family" holds (lmtie 0.1)


@dataclass(frozen=True)
class Family:
    name: str
    model_class: type[TokenModel]
    task: str = "language_modeling"

    @property
    def config_class(self) -> type:
        return self.model_class.config_class


FAMILIES: dict[str, Family] = {}
ARCHS: dict[str, tuple[str, Callable[[], dict]]] = {}  # arch -> (family, overrides)


def register_model(name: str, task: str = "language_modeling"):
    """Class decorator: make a model class a family named ``name`` serving ``task``; the class's own
    ``task`` must agree (a LanguageModel models language, an EncoderDecoderModel translates)."""

    def wrap(cls: type[TokenModel]) -> type[TokenModel]:
        if name in FAMILIES and FAMILIES[name].model_class is not cls:
            raise ValueError(f"model family {name!r} is already registered")
        if cls.task != task:
            raise ValueError(f"model family {name!r}: {cls.__name__}.task is {cls.task!r}, registered for {task!r}")
        cls.family = name
        FAMILIES[name] = Family(name, cls, task)
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


def families_for(task: str) -> list[str]:
    """The names of the families serving ``task``, sorted."""
    return sorted(name for name, f in FAMILIES.items() if f.task == task)


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


def build_model(family: str, cfg, dictionary=None, src_dictionary=None) -> TokenModel:
    """The model of ``cfg`` in ``family`` (sized to the dictionaries given), its tie checked.

    ``dictionary`` is the target side (a language model's only one); a translation family also takes
    the source side's, and without one uses ``dictionary`` for both (a joined dictionary).
    """
    fam = get_family(family)
    if fam.task == "translation":
        model = fam.model_class.build(cfg, dictionary if src_dictionary is None else src_dictionary, dictionary)
    else:
        model = fam.model_class.build(cfg, dictionary)
    model.check_tie()
    return model
