"""The dataclass -> flags mechanism every CLI uses."""

import argparse
from dataclasses import dataclass
from typing import Literal, Optional

import pytest

from lmtie.config import add_dataclass_args, field, from_args, from_dict, to_dict


@dataclass
class Demo:
    width: int = field(8, "a width")
    rate: Optional[float] = field(None, "a rate")
    mode: Literal["a", "b"] = field("a", "a mode")
    betas: tuple = field((0.9, 0.98), "two floats")
    share_weights: bool = field(False, "tie something")
    no_final_norm: bool = field(False, "drop the final norm")


def parse(argv, **kw):
    p = argparse.ArgumentParser()
    add_dataclass_args(p, Demo, **kw)
    return p.parse_args(argv)


def test_defaults_come_from_the_dataclass():
    assert from_args(Demo, parse([])) == Demo()


def test_flags_set_every_kind_of_field():
    cfg = from_args(Demo, parse(["--width", "3", "--rate", "0.5", "--mode", "b", "--betas", "(0.8, 0.9)",
                                 "--share-weights", "--no-final-norm"]))
    assert cfg == Demo(3, 0.5, "b", (0.8, 0.9), True, True)
    assert from_args(Demo, parse(["--rate", "none", "--no-share-weights"])).share_weights is False


def test_a_no_prefixed_boolean_flag_sets_true():
    # argparse's BooleanOptionalAction would read --no-final-norm as the negative form (False)
    assert parse(["--no-final-norm"]).no_final_norm is True


def test_suppressed_defaults_leave_only_explicit_flags():
    ns = parse(["--width", "4", "--no-final-norm"], suppress_defaults=True)
    assert vars(ns) == {"width": 4, "no_final_norm": True}


def test_bad_values_are_refused():
    with pytest.raises(SystemExit):
        parse(["--mode", "c"])


def test_dict_round_trip_and_unknown_keys():
    d = to_dict(Demo(betas=(0.1, 0.2)))
    assert d["betas"] == [0.1, 0.2] and from_dict(Demo, d) == Demo(betas=(0.1, 0.2))
    with pytest.raises(ValueError, match="unknown config keys"):
        from_dict(Demo, {**d, "stale": 1})
