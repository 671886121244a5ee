"""``python -m mrirecon`` is the ``mrirecon`` command."""
from mrirecon.cli import main

raise SystemExit(main())
