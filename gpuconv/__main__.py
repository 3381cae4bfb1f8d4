"""Command line: ``python -m gpuconv compile [--arch sm_80,sm_90] [--family SOURCE] [--json]``."""
from __future__ import annotations

import argparse
import sys

from . import compile_check


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpuconv")
    commands = parser.add_subparsers(dest="command", required=True)
    compile_parser = commands.add_parser(
        "compile", help="compile every kernel family offline with NVRTC (no GPU needed) and "
        "report registers, shared memory, stack frames and spills")
    compile_check.add_arguments(compile_parser)
    args = parser.parse_args(argv)
    return compile_check.run(args)


if __name__ == "__main__":
    sys.exit(main())
