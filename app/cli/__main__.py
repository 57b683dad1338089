"""`python -m app.cli` runs the same command as the `crm` script."""

from app.cli import main

main()
