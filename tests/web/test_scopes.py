"""Named tokens and their scopes: each scope against every route of the route table, 401 vs 403, the tokens file."""

from __future__ import annotations

import re
import signal
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from sessiond import config
from sessiond.core.tokens import Scope
from sessiond.web.routes import ROUTES, Policy, Route
from sessiond.web.runtime import Runtime
from tests.support import TOKEN, Daemon, NotifySocket, write_atomic

SECRETS = {
    "support": ("read", "support-secret-0123456789"),
    "cleaner": ("delete", "cleaner-secret-0123456789"),
    "boss": ("admin", "boss-secret-0123456789abc"),
}
SCOPE_OF = {"support": Scope.READ, "cleaner": Scope.DELETE, "boss": Scope.ADMIN, "admin": Scope.ADMIN}


def write_tokens(folder: Path, tokens: dict[str, tuple[str, str]], extra: str = "") -> Path:
    """A tokens file with one [[token]] per entry, each secret in a file of its own (0400)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for name, (scope, secret) in tokens.items():
        secret_file = folder / f"{name}.secret"
        secret_file.unlink(missing_ok=True)
        secret_file.write_text(secret + "\n")
        secret_file.chmod(0o400)
        lines.append(f'[[token]]\nname = "{name}"\nscope = "{scope}"\nfile = "{secret_file}"\n')
    path = folder / "tokens.toml"
    path.write_text("\n".join(lines) + extra)
    return path


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    ns = NotifySocket(tmp_path / "notify.sock")
    yield ns
    ns.close()


@pytest.fixture
async def scoped(start_client: Callable[..., Awaitable[TestClient]], tmp_path: Path) -> TestClient:
    return await start_client(tokens_file=str(write_tokens(tmp_path / "tokens", SECRETS)))


def concrete(route: Route) -> str:
    """A path that the route's template matches."""
    return re.sub(r"\{(\w+)(:[^}]*)?\}", lambda m: {"version": "0", "name": "app.js"}.get(m.group(1), "nothing-here"), route.path)


BODIES: dict[str, Any] = {"/api/v1/sessions:batchDelete": {"keys": ["nothing-here"]}, "/api/v1/trash:restore": {"keys": ["x"]}}


def secret_of(name: str) -> str:
    return TOKEN if name == "admin" else SECRETS[name][1]


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
@pytest.mark.parametrize("name", ["support", "cleaner", "boss", "admin"])
async def test_each_scope_against_every_route(scoped: TestClient, route: Route, name: str) -> None:
    headers = {"Authorization": f"Bearer {secret_of(name)}"}
    kwargs: dict[str, Any] = {"headers": headers}
    if route.path in BODIES:
        kwargs["json"] = BODIES[route.path]
    if route.path == "/api/v1/events":
        kwargs["params"] = {"timeout": "0"}
    async with scoped.request(route.method, concrete(route), **kwargs) as resp:
        public = route.policy in (Policy.PROBE, Policy.PAGE)
        if not public and SCOPE_OF[name] < route.need.scope:
            assert resp.status == 403, await resp.text()
            assert await resp.json() == {"detail": f"The token '{name}' may not {route.need.doing}"}
        else:
            assert resp.status not in (401, 403), (resp.status, await resp.text())


@pytest.mark.parametrize("route", [r for r in ROUTES if r.policy not in (Policy.PROBE, Policy.PAGE)], ids=lambda r: r.path)
async def test_a_wrong_token_is_401_on_every_route_that_needs_one(scoped: TestClient, route: Route) -> None:
    resp = await scoped.request(route.method, concrete(route), headers={"Authorization": "Bearer support-secret-012345678X"})
    assert resp.status == 401 and resp.headers["WWW-Authenticate"] == "Bearer"
    assert await resp.json() == {"detail": "Authentication required"}


def test_every_route_says_which_scope_it_needs() -> None:
    for route in ROUTES:
        assert isinstance(route.need.scope, Scope) and route.need.doing, route
    assert {r.need.scope for r in ROUTES if r.method != "GET"} == {Scope.DELETE}


async def test_a_read_token_may_not_delete_and_the_file_stays(scoped: TestClient, sessions: Path) -> None:
    path = write_atomic(sessions, "user:keep")
    await scoped.get("/api/v1/sessions/user:keep", headers={"Authorization": f"Bearer {SECRETS['support'][1]}"})
    resp = await scoped.delete("/api/v1/sessions/user:keep", headers={"Authorization": f"Bearer {SECRETS['support'][1]}"})
    assert resp.status == 403
    assert await resp.json() == {"detail": "The token 'support' may not delete sessions"}
    assert path.exists()
    resp = await scoped.delete("/api/v1/sessions/user:keep", headers={"Authorization": f"Bearer {SECRETS['cleaner'][1]}"})
    assert resp.status == 200 and not path.exists()


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ('name = "sup\\nport"\nscope = "read"\nfile = "x"', "needs a name"),
        ('name = "sup\\u001b[31m"\nscope = "read"\nfile = "x"', "needs a name"),
        ('name = "a b"\nscope = "read"\nfile = "x"', "needs a name"),
        ('name = "support"\nscope = "root"\nfile = "x"', "needs a scope"),
        ('name = "support"\nscope = "read"\nfile = "/nonexistent/secret"', "cannot read the secret"),
        ('name = "admin"\nscope = "read"\nfile = "SECRET"', "used twice"),
        ('name = "support"\nscope = "read"\nfile = "SHORT"', "too short"),
        ('name = "support"\nscope = "read"\nfile = "SECRET"\nsecret = "x"', "unknown field"),
    ],
)
def test_a_bad_tokens_file_is_refused_naming_the_fix(
    make_settings: Callable[..., config.Settings], tmp_path: Path, entry: str, says: str
) -> None:
    (tmp_path / "secret").write_text("a-good-secret-0123456789")
    (tmp_path / "short").write_text("short")
    path = tmp_path / "tokens.toml"
    path.write_text("[[token]]\n" + entry.replace("SECRET", str(tmp_path / "secret")).replace("SHORT", str(tmp_path / "short")))
    with pytest.raises(config.ConfigError) as caught:
        make_settings(tokens_file=str(path))
    message = str(caught.value)
    assert message.startswith("tokens_file: ") and says in message
    assert "\n" not in message and "\x1b" not in message and "a-good-secret" not in message


def test_two_tokens_with_one_secret_are_refused(make_settings: Callable[..., config.Settings], tmp_path: Path) -> None:
    path = write_tokens(tmp_path, {"a": ("read", TOKEN)})
    with pytest.raises(config.ConfigError, match="same secret as the single"):
        make_settings(tokens_file=str(path))


async def test_a_reload_adds_removes_and_rotates_tokens_at_once(
    make_settings: Callable[..., config.Settings], tmp_path: Path
) -> None:
    folder = tmp_path / "tokens"
    runtime = Runtime(make_settings(tokens_file=str(write_tokens(folder, {"support": ("read", "old-support-secret-0123")}))))
    names = {t.name for t in runtime.tokens.values()}
    assert names == {"admin", "support"}
    path = write_tokens(
        folder, {"support": ("read", "new-support-secret-0123"), "cleaner": ("delete", "cleaner-0123456789abcdef")}
    )
    assert runtime.reload(make_settings(tokens_file=str(path))) == []
    from sessiond.core.tokens import digest_of

    assert digest_of(b"old-support-secret-0123") not in runtime.tokens
    assert runtime.tokens[digest_of(b"new-support-secret-0123")].name == "support"
    assert runtime.tokens[digest_of(b"cleaner-0123456789abcdef")].scope is Scope.DELETE
    write_tokens(folder, {})
    runtime.reload(make_settings(tokens_file=str(path)))
    assert {t.name for t in runtime.tokens.values()} == {"admin"}


@pytest.mark.slow
def test_a_reload_rotates_tokens_and_a_bad_tokens_file_is_refused_keeping_the_running_set(
    workspace: Path, tmp_path: Path, notify: NotifySocket
) -> None:
    folder = tmp_path / "tokens"
    path = write_tokens(folder, {"support": ("read", "old-support-secret-0123")})
    with Daemon(workspace, env={"SESSIOND_TOKENS_FILE": str(path), "NOTIFY_SOCKET": str(notify.path)}) as d:
        notify.wait_for("READY=1")
        assert d.get("/api/v1/sessions", token="old-support-secret-0123")[0] == 200
        write_tokens(folder, {"support": ("read", "new-support-secret-0123")})
        notify.messages.clear()
        d.proc.send_signal(signal.SIGHUP)
        notify.wait_for("READY=1")
        assert d.get("/api/v1/sessions", token="old-support-secret-0123")[0] == 401
        assert d.get("/api/v1/sessions", token="new-support-secret-0123")[0] == 200
        path.write_text('[[token]]\nname = "evil\\nINFO sessiond: forged"\nscope = "admin"\nfile = "x"\n')
        notify.messages.clear()
        d.proc.send_signal(signal.SIGHUP)
        ready = next(m for m in notify.wait_for("READY=1") if "READY=1" in m)
        assert "STATUS=reload refused (tokens_file:" in ready
        assert d.get("/api/v1/sessions", token="new-support-secret-0123")[0] == 200  # the running set kept
        assert d.stop() == 0
    out = d.output()
    assert "reload refused, keeping the running configuration: tokens_file:" in out
    assert "forged" not in out


async def test_the_per_token_limit_is_per_token_name_and_may_be_set_per_token(
    start_client: Callable[..., Awaitable[TestClient]], tmp_path: Path
) -> None:
    path = write_tokens(tmp_path / "tokens", SECRETS, extra="")
    text = path.read_text().replace('name = "boss"', 'name = "boss"\nrate_limit = 5')
    path.write_text(text)
    client = await start_client(tokens_file=str(path), rate_limit_per_token=2)

    async def status(name: str) -> int:
        return (await client.get("/api/v1/sessions", headers={"Authorization": f"Bearer {secret_of(name)}"})).status

    assert [await status("support") for _ in range(3)] == [200, 200, 429]
    assert [await status("cleaner") for _ in range(3)] == [200, 200, 429]  # a bucket of its own
    assert [await status("boss") for _ in range(6)] == [200] * 5 + [429]  # its own rate_limit
    assert await status("admin") == 200


async def test_metric_series_carry_the_token_name_never_the_token(scoped: TestClient) -> None:
    for name in ("support", "support", "cleaner"):
        await scoped.get("/api/v1/sessions", headers={"Authorization": f"Bearer {secret_of(name)}"})
    await scoped.delete("/api/v1/sessions/x", headers={"Authorization": f"Bearer {secret_of('support')}"})
    text = await (await scoped.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})).text()
    assert 'sessiond_token_requests_total{status="200",token="support"} 2.0' in text
    assert 'sessiond_token_requests_total{status="403",token="support"} 1.0' in text
    assert 'sessiond_token_requests_total{status="200",token="cleaner"} 1.0' in text
    for _, secret in SECRETS.values():
        assert secret not in text
    assert TOKEN not in text


@pytest.mark.parametrize("name", ["support", "cleaner", "boss", "admin"])
async def test_whoami_names_the_token_and_its_scope(scoped: TestClient, name: str) -> None:
    resp = await scoped.get("/api/v1/whoami", headers={"Authorization": f"Bearer {secret_of(name)}"})
    assert await resp.json() == {"name": name, "scope": SCOPE_OF[name].label}
