"""The chromium flags the browser tests and bench/ui.py launch with."""

# Playwright launches with --no-sandbox (chromium_sandbox=False, needed as root) and a
# fresh temporary --user-data-dir; these keep chromium off the (closed) network.
CHROMIUM_ARGS = [
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
