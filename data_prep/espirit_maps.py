#!/usr/bin/env python
"""Data preparation script: the same as `mrirecon prep espirit` (run with --help for the options)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mrirecon.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["prep", "espirit", *sys.argv[1:]]))
