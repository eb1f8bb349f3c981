"""The one exception type for bad user input.

Library code raises :class:`UserError` with a one-line message that names the file or flag
and says what to do; every CLI catches it, prints ``error: <message>`` and exits with 2.
"""

from __future__ import annotations

import functools
import sys
from typing import Callable


class UserError(Exception):
    """Bad input from the user (a file, a flag, a checkpoint), not a bug in lmtie."""


def cli_main(fn: Callable[..., int | None]) -> Callable[..., int]:
    """Wrap a CLI entry point: a UserError becomes one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs) -> int:
        try:
            return fn(*args, **kwargs) or 0
        except UserError as e:
            print(f"{_prog(fn)}: error: {e}", file=sys.stderr)
            return 2

    return wrapper


def _prog(fn: Callable) -> str:
    """``lmtie-eval-lm`` for lmtie.cli.eval_lm, also when run as ``python -m``."""
    module = fn.__module__
    if module == "__main__":
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        module = spec.name if spec is not None else module
    return "lmtie-" + module.rsplit(".", 1)[-1].replace("_", "-")
