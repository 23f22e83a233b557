"""`python -m sessiond` and the `sessiond` console script run the daemon."""

from sessiond.ops import early


def run() -> int:
    """Take SIGTERM over first (stdlib only), then import the daemon and run it."""
    early.install()
    from sessiond.cli import main

    return main()


# Guarded: the scan's worker processes (forkserver) import the main module again.
if __name__ == "__main__":
    raise SystemExit(run())
