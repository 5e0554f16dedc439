"""``python -m trtbuild`` runs the CLI (through the no-op fast path, like the console script)."""

from trtbuild.fastpath import main

main()
