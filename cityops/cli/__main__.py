"""``python -m cityops.cli`` runs the ``cityops`` command."""

from cityops.cli.main import app

app()
