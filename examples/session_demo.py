"""The FIML session demo (spec section 9): a whole multi-query analysis workflow.

Creates a session, tracks several searches (synthetic quotes from the offline provider,
no network), accumulates context, reads recent queries and statistics, extends and closes
the session, archives it with the cleanup job and reads the analytics::

    python examples/session_demo.py            # same as: fiml demo

It uses the embedded SQLite file in your data directory, or FIML_DATABASE_URL when set.
The workflow itself is :mod:`fiml.cli.demo`; this script only runs it.
"""

from __future__ import annotations

import sys

from fiml.cli import app

if __name__ == "__main__":
    sys.exit(app(["demo", *sys.argv[1:]], prog_name="session_demo.py"))
