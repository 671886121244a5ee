"""The ``mrirecon`` command line: one parser, sub-commands in :mod:`mrirecon.commands`.

Each sub-command module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. Errors of the library (:class:`~mrirecon.errors.MriReconError`) and file
errors become one line on stderr and exit status 2; ``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from mrirecon import __version__
from mrirecon.errors import MriReconError

# name -> module; modules are imported only when their sub-command runs or --help is built.
COMMANDS: dict[str, str] = {
    "demo": "mrirecon.commands.demo",
    "info": "mrirecon.commands.info",
    "recon": "mrirecon.commands.recon",
    "prep": "mrirecon.commands.prep",
    "train": "mrirecon.commands.train",
    "lipschitz": "mrirecon.commands.lipschitz",
    "denoisers": "mrirecon.commands.denoisers",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser. With ``only``, just that sub-command's module is imported (fast start-up);
    the others are listed by name. Without it, every module is imported for the full ``--help``."""
    parser = argparse.ArgumentParser(prog="mrirecon", description="MRI reconstruction from raw k-space.")
    parser.add_argument("--version", action="version", version=f"mrirecon {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, modname in COMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name)
            continue
        mod = importlib.import_module(modname)
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show tracebacks instead of one-line errors")
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def _command_in(argv: Sequence[str]) -> str | None:
    """The sub-command named in ``argv`` (the first argument that is not an option), if it is known."""
    for a in argv:
        if not a.startswith("-"):
            return a if a in COMMANDS else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(only=_command_in(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 1
    try:
        return int(args._run(args) or 0)
    except (MriReconError, OSError, KeyError) as exc:
        if args.debug:
            raise
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"mrirecon {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mrirecon {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
