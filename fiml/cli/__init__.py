"""The ``fiml`` command line (typer + rich)::

    fiml [--debug] [--version]
    ├── serve [--http --host H --port P --stateless --tokens FILE --jobs/--no-jobs --offline]
    ├── tokens add USER [--role user|admin] | list | revoke USER      [--tokens FILE]
    ├── demo [--user USER]
    ├── db create | upgrade [--revision R] | verify | drop [--yes]
    ├── sessions list [--user U --include-archived --limit N --cursor C]
    │            show ID [--queries N] | extend ID [--hours H] | close ID
    │            archive [ID...] [--user U] | delete ID [--yes]
    ├── analytics stats [--user U --type T --days D --top N] | user USER [--days D]
    │             export [--format json|csv --output PATH --user U --type T --days D]
    └── cleanup [--skip-retention --skip-metrics --retention-days D]

Every command that prints a result takes ``--json``. Failures are one line on stderr with
a non-zero exit code (see :mod:`fiml.cli.failures`). The CLI administers the store: it
acts on every user's sessions, unlike the MCP tools.
"""

from fiml.cli.app import app, main

__all__ = ["app", "main"]
