"""``python -m snapstore`` runs the ``snap`` command line."""

from snapstore.cli.app import main

main()
