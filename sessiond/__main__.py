"""`python -m sessiond` runs the daemon."""

from .cli import main

raise SystemExit(main())
