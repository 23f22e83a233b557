"""Named tokens with a scope: the tokens file ([[token]] name, scope, file), read and checked at once.

The single token of the settings stays, as the token named "admin" with the admin
scope, so an install without a tokens file works as before. The names are shown in
logs, metrics and the audit trail, so they are checked here, at load: a name that
could forge a log line (a newline, any control character) never gets that far.
"""

from __future__ import annotations

import enum
import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ADMIN_NAME = "admin"  # the single token's name
MAX_TOKENS = 1000  # names are metric labels: a bounded set
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


class Scope(enum.IntEnum):
    """What a token may do; each scope may do everything the ones below it may."""

    READ = 1  # list, detail, search, export, events, stats, retention preview, the trash's list
    DELETE = 2  # + DELETE, batchDelete, trash restore
    ADMIN = 3  # + metrics (when they need a token), the audit trail, configuration

    @property
    def label(self) -> str:
        """The scope as the tokens file and the API write it."""
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class NamedToken:
    """One token: its name (not secret), its scope, and the SHA-256 of its secret (never the secret)."""

    name: str
    scope: Scope
    digest: bytes = field(repr=False)
    rate_limit: int | None = None  # requests/min for this token (None: rate_limit_per_token)


class TokensError(ValueError):
    """The tokens file is wrong; the message names the entry and the fix (never a secret)."""


def digest_of(secret: bytes) -> bytes:
    """What tokens are compared by (equal lengths, so the comparison never depends on the guess's length)."""
    return hashlib.sha256(secret).digest()


def check_secret(secret: str, where: str) -> None:
    """The rule every token follows: 16+ printable ASCII characters without spaces."""
    if not secret.isascii() or not secret.isprintable() or " " in secret:
        raise TokensError(f"{where} must be printable ASCII without spaces")
    if len(secret) < 16:
        raise TokensError(f"{where} is too short ({len(secret)} chars); use at least 16")


def load_tokens(path: Path) -> tuple[NamedToken, ...]:
    """The tokens of *path*, every one checked; TokensError for the first problem."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise TokensError(f"cannot read {path} ({exc.strerror}); fix the path or its permissions") from None
    except tomllib.TOMLDecodeError as exc:
        raise TokensError(f"{path} is not valid TOML ({exc})") from None
    unknown = sorted(set(data) - {"token"})
    if unknown:
        raise TokensError(f"{path}: unknown table {unknown[0]!r}; write each token as a [[token]] table")
    entries = data.get("token", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise TokensError(f"{path}: write each token as a [[token]] table")
    if len(entries) > MAX_TOKENS:
        raise TokensError(f"{path}: {len(entries)} tokens, more than {MAX_TOKENS}")
    tokens = [_entry(path, n, entry) for n, entry in enumerate(entries, 1)]
    names: set[str] = {ADMIN_NAME}
    digests: set[bytes] = set()
    for token in tokens:
        if token.name in names:
            raise TokensError(f"{path}: the name {token.name!r} is used twice (admin is the single token's); rename one")
        if token.digest in digests:
            raise TokensError(f"{path}: the token {token.name!r} has the same secret as another; give each its own")
        names.add(token.name)
        digests.add(token.digest)
    return tuple(tokens)


def _entry(path: Path, n: int, entry: dict[str, Any]) -> NamedToken:
    unknown = sorted(set(entry) - {"name", "scope", "file", "rate_limit"})
    if unknown:
        raise TokensError(f"{path}: token {n} has an unknown field {unknown[0]!r} (known: name, scope, file, rate_limit)")
    name = entry.get("name")
    # Checked before it is ever shown: a control character would forge a log line.
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise TokensError(
            f"{path}: token {n} needs a name of 1-64 letters, digits, '.', '_', '@' or '-' (no spaces or control characters)"
        )
    scope_text = entry.get("scope")
    scope = next((s for s in Scope if s.label == scope_text), None)
    if scope is None:
        raise TokensError(f"{path}: token {name!r} needs a scope: read, delete or admin")
    rate_limit = entry.get("rate_limit")
    if rate_limit is not None and (
        isinstance(rate_limit, bool) or not isinstance(rate_limit, int) or not 0 <= rate_limit <= 1_000_000
    ):
        raise TokensError(f"{path}: token {name!r} has a rate_limit that is not a whole number from 0 to 1000000")
    secret_file = entry.get("file")
    if not isinstance(secret_file, str) or not secret_file:
        raise TokensError(f"{path}: token {name!r} needs a file holding its secret")
    secret_path = Path(secret_file)
    if not secret_path.is_absolute():
        secret_path = path.parent / secret_path
    try:
        secret = secret_path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise TokensError(f"{path}: cannot read the secret of token {name!r} ({exc.strerror}); fix its file") from None
    except UnicodeDecodeError:
        raise TokensError(f"{path}: the secret of token {name!r} is not UTF-8 text") from None
    check_secret(secret, f"{path}: the secret of token {name!r}")
    return NamedToken(name, scope, digest_of(secret.encode("ascii")), rate_limit)
