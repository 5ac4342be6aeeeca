"""``python -m slakit``: the command line."""

from slakit.cli import main

main()
