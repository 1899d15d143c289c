"""Command line: a thin adapter over the public API."""

from __future__ import annotations

import argparse
import sys

from blpdemand import __version__
from blpdemand.cli_run import SPEC_COMMANDS, add_spec_commands, run_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="blpdemand", description=__doc__)
    parser.add_argument("--version", action="version", version=f"blpdemand {__version__}")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("demo", help="simulate a market and estimate it (no data needed)")
    add_spec_commands(sub)  # estimate, logit (cli_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command in SPEC_COMMANDS:
        return run_command(args)
    print(f"command {args.command!r} is not implemented yet", file=sys.stderr)
    return 2
