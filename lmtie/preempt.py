"""SIGTERM and SIGUSR1 (preemption) in a training process, from its first import to its exit.

A scheduler may signal at any instant, so no instant may end in the default action (death
by -15/-10). There are two phases:

- **start-up** (the imports of ``lmtie-train``, argument parsing, :func:`lmtie.training.train`
  up to the trainer): nothing that start-up writes is half-done when it stops (checkpoints and
  configs are atomic, preprocessing builds beside its destdir), so the handler stops at once:
  it prints one line and raises :class:`StartupPreempted`, a ``SystemExit`` with code 0, which
  ``train`` turns into ``{"preempted_by": NAME, "updates": None}`` and which, uncaught (during
  the imports), ends the process with exit code 0.
- **training**: the trainer installs its own handlers, which only record the signal; the
  current step finishes, ``checkpoint_last`` is written and the run exits with code 0.

Only the main thread can install handlers; elsewhere (a notebook worker) nothing changes.
"""

from __future__ import annotations

import os
import signal
import sys

SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

# the commands whose processes get the start-up handlers as soon as lmtie is imported
_COMMAND_MODULES = {"lmtie.cli.train": "lmtie-train", "lmtie.ablation.ablate_run": "lmtie-ablate"}
_COMMAND_SCRIPTS = {"lmtie-train"}

_pending: str | None = None  # a start-up signal, also when its exception was swallowed (a __del__)


class StartupPreempted(SystemExit):
    """A preemption signal arrived before training started; nothing was written."""

    def __init__(self, signal_name: str):
        super().__init__(0)
        self.signal_name = signal_name


def pending() -> str | None:
    """The name of a signal that arrived during start-up and was not acted on, if any."""
    return _pending


def clear() -> None:
    global _pending
    _pending = None


def _record(signum, frame) -> None:
    global _pending
    _pending = _pending or signal.Signals(signum).name


def _stop(signum, frame) -> None:
    global _pending
    name = signal.Signals(signum).name
    _pending = name
    _install(_record)  # a second signal must not cut the clean-up of the first short
    try:  # os.write: print() could re-enter a buffered write the signal interrupted
        os.write(2, f"{_prog()}: stopped by {name} during start-up, before training began; no checkpoint was "
                    "written; run the same command again to start (or resume)\n".encode())
    except OSError:
        pass
    raise StartupPreempted(name)


def _install(handler) -> bool:
    try:
        for s in SIGNALS:
            signal.signal(s, handler)
    except ValueError:  # not the main thread
        return False
    return True


def install_startup_handlers() -> bool:
    """Stop at once (cleanly) on SIGTERM/SIGUSR1 from now until the trainer installs its own."""
    clear()
    return _install(_stop)


def install_for_command() -> None:
    """Called first thing by ``import lmtie``: the start-up handlers, if this process is ``lmtie-train``."""
    global _program
    _program = _command()
    if _program is not None:
        _install(_stop)


def _command() -> str | None:
    """``lmtie-train`` when this process runs it (as a script or with ``python -m``), else None."""
    argv0 = sys.argv[0] if sys.argv else ""
    if argv0 == "-m":  # python -m PKG.MOD while PKG is imported: the module is in orig_argv
        argv = list(getattr(sys, "orig_argv", []))
        i = argv.index("-m", 1) if "-m" in argv[1:] else -1
        return _COMMAND_MODULES.get(argv[i + 1]) if 0 < i < len(argv) - 1 else None
    name = os.path.basename(argv0)
    return name if name in _COMMAND_SCRIPTS else None


_program: str | None = None


def _prog() -> str:
    return _program or "lmtie"
