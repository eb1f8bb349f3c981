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


# --- ranges: declared on the field, checked by validate_ranges from __post_init__ ----------------
from lmtie.config import _unwrap_optional, validate_ranges  # noqa: E402
from lmtie.errors import UserError  # noqa: E402


@dataclass
class Ranged:
    layers: int = field(2, "layers", min=1)
    dropout: float = field(0.1, "dropout", min=0, lt=1)
    lr: float = field(1e-3, "lr", gt=0)
    keep: int = field(-1, "-1 = all", min=-1)
    cap: Optional[int] = field(None, "optional", min=1)
    betas: tuple = field((0.9, 0.98), "betas", min=0, lt=1, length=2)
    hidden: int = field(0, "no flag", cli=False, min=0)

    def __post_init__(self):
        validate_ranges(self)


@pytest.mark.parametrize("kw,message", [
    (dict(layers=0), "--layers 0: must be >= 1"),
    (dict(dropout=1.5), "--dropout 1.5: must be in [0, 1)"),
    (dict(dropout=float("nan")), "--dropout nan: must be a finite number"),
    (dict(lr=0.0), "--lr 0.0: must be > 0"),
    (dict(lr=float("inf")), "--lr inf: must be a finite number"),
    (dict(keep=-2), "--keep -2: must be >= -1"),
    (dict(cap=0), "--cap 0: must be >= 1"),
    (dict(betas=(0.9,)), "--betas (0.9): must be 2 numbers"),
    (dict(betas=(0.9, 1.0)), "--betas (0.9, 1.0): each value must be in [0, 1)"),
    (dict(layers=2.0), "--layers 2.0: must be an integer"),
    (dict(layers=True), "--layers True: must be an integer"),
    (dict(lr="1e-3"), "--lr '1e-3': must be a number"),
    (dict(hidden=-1), "hidden -1: must be >= 0"),
])
def test_out_of_range_values_name_the_flag(kw, message):
    with pytest.raises(UserError) as e:
        Ranged(**kw)
    assert str(e.value) == message


def test_in_range_values_and_none_for_optional_fields_pass():
    Ranged(layers=1, dropout=0.0, lr=1e-9, keep=-1, cap=None, betas=(0.0, 0.999), hidden=0)


def test_ranges_are_checked_on_parsed_flags_and_on_dicts_from_json():
    p = argparse.ArgumentParser()
    add_dataclass_args(p, Ranged)
    with pytest.raises(UserError, match=r"^--dropout 1.5: must be in \[0, 1\)$"):
        from_args(Ranged, p.parse_args(["--dropout", "1.5"]))
    with pytest.raises(UserError, match="--layers -3"):
        from_dict(Ranged, {"layers": -3})
    with pytest.raises(ValueError, match="expected a list"):
        from_dict(Ranged, {"betas": 0.9})
    with pytest.raises(ValueError, match="expected a JSON object"):
        from_dict(Ranged, [1, 2])


def test_json_values_of_the_wrong_type_are_refused():
    with pytest.raises(ValueError, match="expected true or false"):
        from_dict(Demo, {"share_weights": "yes"})
    with pytest.raises(ValueError, match="'c' is not one of"):
        from_dict(Demo, {"mode": "c"})
    with pytest.raises(ValueError, match="null is not allowed"):
        from_dict(Demo, {"width": None})


def test_every_numeric_field_of_every_config_dataclass_declares_a_range():
    """The one place ranges live: a numeric field without a bound would accept -1 silently."""
    import dataclasses
    import typing

    from lmtie.ablation.config import AblationConfig
    from lmtie.data.preprocess import PreprocessConfig
    from lmtie.evaluation.config import EvalLMConfig, GenerateConfig
    from lmtie.models import FAMILIES
    from lmtie.training.config import CheckpointConfig, DataConfig, OptimizationConfig, RunConfig

    classes = [AblationConfig, PreprocessConfig, EvalLMConfig, GenerateConfig, CheckpointConfig, DataConfig,
               OptimizationConfig, RunConfig, *(f.config_class for f in FAMILIES.values())]
    unbounded = []
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp, _ = _unwrap_optional(hints[f.name])
            r = f.metadata.get("range")
            if tp in (int, float, tuple) and (r is None or (r.min is None and r.gt is None)):
                unbounded.append(f"{cls.__name__}.{f.name}")
        assert "__post_init__" in vars(cls), f"{cls.__name__} does not run validate_ranges"
    assert not unbounded, unbounded
