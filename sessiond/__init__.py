"""sessiond: serve AI-agent session files over HTTP from a watched in-memory index."""

__version__ = "0.1.0"
