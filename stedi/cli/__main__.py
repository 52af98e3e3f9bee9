"""``python -m stedi.cli``."""

from stedi.cli import main

main()
