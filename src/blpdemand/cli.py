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
    demo = sub.add_parser("demo", help="simulate markets: logit, BLP and a merger (no data needed)")
    demo.add_argument("--markets", type=int, default=100, help="number of markets (100)")
    demo.add_argument("--products", type=int, default=20, help="products per market (20)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (0)")
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

    from blpdemand.demo import run_demo

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
