"""`python -m segloop ...`: the command line."""

from segloop.cli import main

raise SystemExit(main())
