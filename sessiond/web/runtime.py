"""Runtime: the part of the settings that a reload (SIGHUP) may change without a restart."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from collections.abc import Mapping

from sessiond.config import Settings
from sessiond.core.tokens import ADMIN_NAME, NamedToken, Scope, digest_of
from sessiond.web.front.forwarded import TrustedProxies
from sessiond.web.front.ratelimit import RateLimiter

# What a reload applies: Runtime (below) and the CLI's logging set-up read these.
LIVE = frozenset(
    {
        "token",
        "tokens_file",
        "tokens",
        "rate_limit_per_ip",
        "rate_limit_per_token",
        "rate_limit_max_clients",
        "trusted_proxies",
        "metrics_require_token",
        "log_level",
        "log_format",
        "access_log",
        # retention.py's task reads these at every run: a reload changes the rules live
        "retention",
        "retention_interval",
        "retention_max_per_run",
        "retention_dry_run",
        "retention_grace",
    }
)
# Every other setting is read once, at start: a reload that changes one says so.
# Derived, so that a new setting is never silently ignored by a reload.
RESTART_ONLY = tuple(
    field.name for field in dataclasses.fields(Settings) if field.name not in LIVE | {"config_file", "token_source"}
)


class Runtime:
    """Live configuration read by the front door on every request."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ip_limiter: RateLimiter | None = None
        self.own_limiters: dict[str, RateLimiter | None] = {}
        self.token_limiter: RateLimiter | None = None
        # Wrong tokens per client address, at the per-IP rate, on every path that needs
        # a token: /metrics is exempt from the per-IP limit (monitoring must not starve),
        # so guessing there is limited by this one.
        self.auth_failure_limiter: RateLimiter | None = None
        self._configure(settings)

    def _configure(self, settings: Settings) -> None:
        self.token = settings.token.encode("ascii")
        admin = NamedToken(ADMIN_NAME, Scope.ADMIN, digest_of(self.token))
        # One dict, swapped whole: a reload adds, removes and rotates tokens at once.
        self.tokens: Mapping[bytes, NamedToken] = {admin.digest: admin} | {t.digest: t for t in settings.tokens}
        # Signs list cursors: stable across restarts and instances sharing the token,
        # void once the token is rotated.
        self.cursor_key = hmac.new(self.token, b"sessiond list cursor", hashlib.sha256).digest()
        self.metrics_public = not settings.metrics_require_token
        self.proxies = TrustedProxies(settings.trusted_proxies)
        self.ip_limiter = _limiter(self.ip_limiter, settings.rate_limit_per_ip, settings.rate_limit_max_clients)
        self.token_limiter = _limiter(self.token_limiter, settings.rate_limit_per_token, settings.rate_limit_max_clients)
        # A token with a rate_limit of its own has its own bucket (kept across a reload that leaves it alone).
        own = self.own_limiters
        self.own_limiters = {
            t.name: _limiter(own.get(t.name), t.rate_limit, 1) for t in settings.tokens if t.rate_limit is not None
        }
        self.auth_failure_limiter = _limiter(
            self.auth_failure_limiter, settings.rate_limit_per_ip, settings.rate_limit_max_clients
        )
        self.settings = settings

    def reload(self, settings: Settings) -> list[str]:
        """Apply *settings*; return the names of changed settings that need a restart."""
        pending = [name for name in RESTART_ONLY if getattr(settings, name) != getattr(self.settings, name)]
        self._configure(settings)
        return pending

    def limiter_for(self, token: NamedToken) -> RateLimiter | None:
        """The per-token limit *token* is held to (its own, else rate_limit_per_token), keyed by its name."""
        if token.name in self.own_limiters:
            return self.own_limiters[token.name]
        return self.token_limiter

    def limiters(self) -> dict[str, RateLimiter]:
        """The active limiters by name (for metrics)."""
        active = {"ip": self.ip_limiter, "token": self.token_limiter, "auth_failure": self.auth_failure_limiter}
        return {name: limiter for name, limiter in active.items() if limiter is not None}


def _limiter(current: RateLimiter | None, per_minute: int, max_keys: int) -> RateLimiter | None:
    # Keep the buckets (and who is over the limit) when a reload leaves the rate alone.
    if not per_minute:
        return None
    if current is not None and current.per_minute == per_minute:
        current.max_keys = max_keys
        return current
    return RateLimiter(per_minute, max_keys)
