"""``python -m stedi.cli``: the same command line as ``stedi-etl``."""

from stedi.cli import main

main()
