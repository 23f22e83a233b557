"""One middleware per module; the order they run in is set once, in app.py."""
