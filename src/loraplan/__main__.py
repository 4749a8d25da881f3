"""`python -m loraplan` runs the CLI."""

from loraplan.cli import main

main()
