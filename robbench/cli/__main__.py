"""`python -m robbench.cli`: the console script, for tests and machines without it on PATH."""

from robbench.cli import main

main()
