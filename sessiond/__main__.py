"""`python -m sessiond` runs the daemon."""

from sessiond.cli import main

# Guarded: the scan's worker processes (forkserver) import the main module again.
if __name__ == "__main__":
    raise SystemExit(main())
