"""``python -m trtbuild`` runs the CLI."""

from trtbuild.cli.main import main

main()
