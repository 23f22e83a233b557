"""Runtime: the part of the settings that a reload (SIGHUP) may change without a restart."""

from __future__ import annotations

from .config import Settings
from .middlewares.auth import token_id
from .middlewares.forwarded import TrustedProxies
from .middlewares.ratelimit import RateLimiter

PROBES = ("/health", "/livez", "/readyz")
# The operators' web page: static files, public (the data it shows needs the token).
PAGE_PREFIX = "/ui/"
PAGE_PATHS = ("/ui",)
# Settings that only take effect at start: a reload that changes them says so.
RESTART_ONLY = (
    "workspace", "host", "port", "unix", "unix_mode", "debounce_ms", "force_polling", "max_file_bytes", "shutdown_timeout",
)


class Runtime:
    """Live configuration read by the middlewares on every request."""

    public_prefix = PAGE_PREFIX  # every path below it is public too

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ip_limiter: RateLimiter | None = None
        self.token_limiter: RateLimiter | None = None
        self._configure(settings)

    def _configure(self, settings: Settings) -> None:
        self.token = settings.token.encode("ascii")
        self.token_id = token_id(self.token)
        public = set(PROBES) | set(PAGE_PATHS)
        if not settings.metrics_require_token:
            public.add("/metrics")
        self.public_paths = frozenset(public)
        self.proxies = TrustedProxies(settings.trusted_proxies)
        self.ip_limiter = _limiter(self.ip_limiter, settings.rate_limit_per_ip, settings.rate_limit_max_clients)
        self.token_limiter = _limiter(self.token_limiter, settings.rate_limit_per_token, settings.rate_limit_max_clients)
        self.settings = settings

    def reload(self, settings: Settings) -> list[str]:
        """Apply *settings*; return the names of changed settings that need a restart."""
        pending = [name for name in RESTART_ONLY if getattr(settings, name) != getattr(self.settings, name)]
        self._configure(settings)
        return pending

    def limiters(self) -> dict[str, RateLimiter]:
        """The active limiters by name (for metrics)."""
        active = {"ip": self.ip_limiter, "token": self.token_limiter}
        return {name: limiter for name, limiter in active.items() if limiter is not None}


def _limiter(current: RateLimiter | None, per_minute: int, max_keys: int) -> RateLimiter | None:
    # Keep the buckets (and who is over the limit) when a reload leaves the rate alone.
    if not per_minute:
        return None
    if current is not None and current.per_minute == per_minute:
        current.max_keys = max_keys
        return current
    return RateLimiter(per_minute, max_keys)
