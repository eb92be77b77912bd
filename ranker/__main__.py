"""``python -m ranker`` runs the ``shoprank`` command line."""

from ranker.cli import app

app()
