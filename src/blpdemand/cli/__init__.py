"""Command line: a thin adapter over the public API.

Ctrl-C (SIGINT) at any point of a command ends it with exit status 130 and one line
"interrupted" on stderr; a spec command then leaves its output folder as it was before the run
(outputs are written to a sibling ``<folder>.partial-<pid>`` and moved into place at the end).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from blpdemand import __version__

# the heavy modules (numpy, pandas, rich, the estimators) are imported inside main(), where an
# interrupt while they load is caught like any other
SPEC_COMMANDS = {
    "estimate": ("estimate a BLP random-coefficients model from a TOML specification",
                 ("Reads SPEC.toml (data files, formulas, instruments, integration, [estimation] "
                  "options, [post] outputs), shows one row per objective evaluation, the "
                  "estimates and requested post-estimation tables, and writes results.json, LaTeX "
                  "and HTML tables and PNG plots to the output folder. See examples/README.md.")),
    "logit": ("estimate a plain logit (OLS/IV, absorbed fixed effects) from a TOML spec",
              ("Reads SPEC.toml ([data], [columns], [model] linear and absorb, [instruments], "
               "[logit] options such as the covariance, [post]) and writes the same outputs as "
               "'estimate'. See examples/README.md.")),
}


class Interrupts:
    """Ctrl-C during a command: raised as ``KeyboardInterrupt`` as usual, and remembered.

    A compiled (numba) kernel can surface the interrupt as a ``SystemError`` and a broad
    ``except`` in library code can swallow it; the command asks ``check()`` before it moves its
    outputs into place, so an interrupt is never lost. Inside ``shielded()`` (moving or deleting
    folders) SIGINT is only recorded, so that a folder is never left half moved."""

    def __init__(self) -> None:
        self.seen = False
        self._shielded = 0

    @contextmanager
    def installed(self) -> Iterator[Interrupts]:
        """Handle SIGINT while the block runs (main thread only; an ignored SIGINT stays so)."""
        previous = signal.getsignal(signal.SIGINT)
        if threading.current_thread() is not threading.main_thread() or previous in (
                signal.SIG_IGN, None):
            yield self
            return

        def handler(signum: int, frame: FrameType | None) -> None:
            self.seen = True
            if not self._shielded:
                raise KeyboardInterrupt

        hook = sys.unraisablehook

        def unraisable(args: Any) -> None:
            # raised inside a finalizer or weakref callback (e.g. matplotlib's during garbage
            # collection), Python would print a traceback and go on; it is recorded (seen), and
            # the command's next checkpoint() raises it
            if not isinstance(args.exc_value, KeyboardInterrupt):
                hook(args)

        signal.signal(signal.SIGINT, handler)
        sys.unraisablehook = unraisable
        try:
            yield self
        finally:
            sys.unraisablehook = hook
            signal.signal(signal.SIGINT, previous)

    @contextmanager
    def shielded(self) -> Iterator[None]:
        """SIGINT is recorded but not raised while the block runs."""
        self._shielded += 1
        try:
            yield
        finally:
            self._shielded -= 1

    def check(self) -> None:
        """Raise KeyboardInterrupt if SIGINT came (even if something swallowed it since); the
        command calls it at each progress row, table, plot and job, and before the move (in
        the main thread only: SIGINT is the main thread's, as Python delivers it)."""
        if self.seen and threading.current_thread() is threading.main_thread():
            raise KeyboardInterrupt

    def caused(self, exc: BaseException) -> bool:
        """Whether ``exc`` is, or came from, an interrupt (e.g. numba's "returned a result with
        an exception set" SystemError, whose context is the KeyboardInterrupt), or came while
        SIGINT had been seen (whatever an interrupted kernel raised next)."""
        seen: set[int] = set()
        current: BaseException | None = exc
        while current is not None and id(current) not in seen:
            if isinstance(current, KeyboardInterrupt):
                return True
            seen.add(id(current))
            current = current.__cause__ or current.__context__
        return self.seen


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="blpdemand", description="Command line: a thin adapter over the public API.")
    parser.add_argument("--version", action="version", version=f"blpdemand {__version__}")
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="simulate markets: logit, BLP and a merger (no data needed)")
    demo.add_argument("--markets", type=int, default=100, help="number of markets (100)")
    demo.add_argument("--products", type=int, default=20, help="products per market (20)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (0)")
    add_spec_commands(sub)
    return parser


def add_spec_commands(sub: Any) -> None:
    """Add ``estimate`` and ``logit`` to the ``blpdemand`` sub-command parser."""
    for name, (short, long) in SPEC_COMMANDS.items():
        example = "nevo.toml" if name == "estimate" else "cars.toml"
        p = sub.add_parser(name, help=short, description=long,
                           epilog=f"example: BLPDEMAND_DATA=path/to/data blpdemand {name} "
                                  f"examples/{example} --output results")
        p.add_argument("spec", type=Path, metavar="SPEC.toml", help="the specification file")
        p.add_argument("--output", "-o", type=Path, metavar="DIR", default=None,
                       help="folder for results.json, tables and plots (default: [output] "
                            "directory of the spec, else ./<spec name>-results); it is replaced "
                            "as a whole at the end of a run, and left as it was if the run fails "
                            "or is interrupted")
        p.add_argument("--quiet", "-q", action="store_true",
                       help="no per-evaluation progress rows")
        p.add_argument("--traceback", action="store_true",
                       help="show the Python traceback of an error (for bug reports)")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    interrupts = Interrupts()
    try:
        with interrupts.installed():
            code = _dispatch(args, interrupts)
            # SIGINT while the finished outputs were moved into place (shielded): moved, 130
            interrupts.check()
        return code
    except KeyboardInterrupt:
        return interrupted(args.command)
    except Exception as exc:
        if interrupts.caused(exc):
            return interrupted(args.command)
        raise


def run_command_line() -> NoReturn:
    """The ``blpdemand`` command (console script and ``python -m blpdemand``): ``main()``,
    then the exit status without the interpreter's teardown.

    By the time ``main`` returns, everything a run opened is closed (pools and clusters, the
    figure process, the output folder moved into place) and stdout and stderr are flushed
    here; what the teardown would still do is unload numba's LLVM, matplotlib, pandas and the
    rest, 0.3-0.4 s on every command. A failure or an interrupt (a nonzero status), a child
    process still running, or an exception ``main`` lets through ends the process the usual
    way, with the interpreter's cleanups (a process pool's workers are ended there)."""
    one_blas_thread(os.environ)
    code = main()
    import multiprocessing

    if code != 0 or multiprocessing.active_children():
        raise SystemExit(code)  # a failure or an interrupt: the usual exit, its cleanups
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


#: the BLAS libraries' thread counts (OpenBLAS, OpenMP builds, MKL); numpy reads them at import
BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def one_blas_thread(environ: MutableMapping[str, str]) -> None:
    """One BLAS thread for the command, unless the user set any of ``BLAS_THREADS``; before
    numpy is imported. Its work is compiled kernels market by market and small matrix
    products, which a second BLAS thread does not speed up; and that thread spins on the core
    where the figures are drawn meanwhile (blp.toml: 2.95-3.15 s with OpenBLAS's default two
    threads, 2.53-2.66 s with one). Parallel work is ``[compute]``'s, and its process workers
    inherit one thread each (no oversubscription)."""
    if not any(name in environ for name in BLAS_THREADS):
        for name in BLAS_THREADS:
            environ[name] = "1"


def interrupted(command: str) -> int:
    """One line on stderr and the shell's status for SIGINT (128 + 2)."""
    # CPython (3.11, `python -m`) remembers a KeyboardInterrupt that left an exec() of source
    # text (numba and dataclasses generate code so) even when it was caught later, and then
    # ends the process by SIGINT instead of with this status; evaluating source text resets it
    eval("None")  # a constant, evaluated for that side effect only
    # on a line of its own: after the terminal's "^C", or a progress bar cut mid-line
    print(f"\nblpdemand {command}: interrupted", file=sys.stderr)
    return 130


def _dispatch(args: argparse.Namespace, interrupts: Interrupts) -> int:
    if args.command in SPEC_COMMANDS:
        from blpdemand.cli.run import run_command

        return run_command(args, interrupts=interrupts)
    if args.command == "demo":
        from blpdemand.errors import BLPDemandError

        try:
            return _demo(args)
        except BLPDemandError as exc:  # e.g. --products 1: one line and status 2, as estimate
            print(f"blpdemand demo: error: {' '.join(str(exc).split())}", file=sys.stderr)
            return 2
    print(f"command {args.command!r} is not implemented yet", file=sys.stderr)
    return 2


def _demo(args: argparse.Namespace) -> int:
    """Simulate car-like markets: OLS vs IV logit, BLP beside the truth, a merger; render it."""
    from rich.console import Console

    from blpdemand.cli.demo import run_demo

    console = Console(width=max(Console().width, 100))
    report = run_demo(markets=args.markets, products=args.products, rng=args.seed)
    for section in report.sections:
        console.rule(section.heading)
        for table in section.tables:
            console.print(table)
            console.print()
        for line in section.lines:
            console.print(line)
    return 0
