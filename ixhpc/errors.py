"""Known failures: one base class, a few kinds, each kind with its exit code.

A known failure is reported as one line (a ``ConfigError`` as one line per located problem),
never a traceback; anything else is a bug and keeps its traceback. Raise sites choose the
kind, never the exit code. ``guard`` is the one place that turns them into output and exit
codes, for ``ixhpc`` (``cli.main``) and every ``python -m ixhpc.*`` entry point alike;
docs/contracts.md lists the codes.

Standard library only: the load generator imports this inside engine containers.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from typing import ClassVar, TypeVar

INTERRUPTED = 130   # Ctrl-C, as shells report SIGINT


class IxhpcError(Exception):
    """A failure the user can act on that fits no narrower kind (an external step failed)."""

    exit_code: ClassVar[int] = 1

    def __init__(self, message: str) -> None:  # one argument: the kind, not the caller, sets the code
        super().__init__(message)


# Kept for callers written before the kinds existed: the base under its old name.
UserError = IxhpcError


class ConfigError(IxhpcError):
    """What the user wrote is invalid: recipe, profile or runner files (one located line per
    problem in ``errors``, all of them at once) or a command-line value."""

    exit_code: ClassVar[int] = 2

    def __init__(self, errors: str | Sequence[str]) -> None:
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        n = len(self.errors)
        super().__init__(self.errors[0] if n == 1 else f"{n} errors:\n" + "\n".join(self.errors))


class PlanError(IxhpcError):
    """Valid input that cannot become jobs here: nothing left after the filters, no partition
    for a runner, a run directory that exists already or cannot be found."""

    exit_code: ClassVar[int] = 3


class ResultFileError(IxhpcError):
    """A result, bench or merged file is missing, unreadable, damaged, or would be overwritten."""

    exit_code: ClassVar[int] = 4


class SlurmError(IxhpcError):
    """Slurm refused a request or is not there (sbatch/salloc missing, invalid partition)."""

    exit_code: ClassVar[int] = 5


class SlurmTransientError(SlurmError):
    """Slurm stayed busy or unreachable through every retry: the same command may work later."""

    exit_code: ClassVar[int] = 75   # EX_TEMPFAIL (sysexits.h): wrappers retry on it


KINDS: tuple[type[IxhpcError], ...] = (IxhpcError, ConfigError, PlanError, ResultFileError,
                                       SlurmError, SlurmTransientError)


def report(prog: str, exc: IxhpcError) -> int:
    """Print ``exc`` for the user, without a traceback; return its kind's exit code."""
    print(f"{prog}: error: {exc}", file=sys.stderr)
    return exc.exit_code


def guard(prog: str, body: Callable[[], int | None]) -> int:
    """Run ``body``; a known failure or Ctrl-C becomes a message and an exit code."""
    try:
        return int(body() or 0)
    except IxhpcError as exc:
        return report(prog, exc)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:  # `ixhpc logs RUN | head`: the reader has all it wanted
        _silence_stdout()
        return 0


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush finds no broken pipe."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


Main = TypeVar("Main", bound=Callable[..., int])


def main_guard(prog: str) -> Callable[[Main], Main]:
    """Decorate a ``python -m`` entry point's ``main(argv)`` with ``guard``."""
    def wrap(main: Main) -> Main:
        @functools.wraps(main)
        def guarded(*args: object, **kwargs: object) -> int:
            return guard(prog, lambda: main(*args, **kwargs))
        return guarded  # type: ignore[return-value]
    return wrap
