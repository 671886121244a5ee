"""Sub-commands of the ``mrirecon`` command line (one module each)."""
