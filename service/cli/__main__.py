"""`python -m service.cli`: the `deltahub` command without the installed entry point."""

from service.cli import main

main()
