"""Names vulture cannot see used: `make lint` runs `vulture sessiond vulture_whitelist.py`.

Each is called by a framework, not by sessiond, or read by the tests only on purpose.
"""

# prometheus_client calls collect() on every registered collector at scrape time.
_.collect  # type: ignore[name-defined]  # noqa: F821
# asyncio calls these on a protocol (capacity.py's probe responder).
_.connection_made  # type: ignore[name-defined]  # noqa: F821
_.data_received  # type: ignore[name-defined]  # noqa: F821
# capacity.py gives the server aiohttp built the capped class (assignment to __class__).
_.__class__  # type: ignore[name-defined]  # noqa: F821
# logging reads exc_text when it formats the record (ops/logs.py clears it with exc_info).
_.exc_text  # type: ignore[name-defined]  # noqa: F821
# (files read, files kept from the snapshot) of the last scan: what the snapshot tests
# observe to tell a warm start from a cold one.
_.last_scan_counts  # type: ignore[name-defined]  # noqa: F821
# Settings.tokens_file: where the named tokens came from; a reload compares it and check-config shows it.
_.tokens_file  # type: ignore[name-defined]  # noqa: F821
