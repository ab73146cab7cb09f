"""``python -m fiml.cli``: the ``fiml`` command."""

from fiml.cli.app import main

main()
