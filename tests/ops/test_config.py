"""Settings: precedence file < env < flags, and one clear error per bad setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from sessiond import config

TOKEN = "a-very-secret-token-123"


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_precedence_file_env_flags(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    cfg = write_toml(
        tmp_path / "c.toml", f'workspace = "{ws}"\ntoken = "{TOKEN}"\nport = 1111\nhost = "127.0.0.2"\nrate_limit_per_ip = 5\n'
    )
    s = config.load({}, env={}, config_file=cfg)
    assert (s.port, s.host, s.rate_limit_per_ip) == (1111, "127.0.0.2", 5)
    s = config.load({}, env={"SESSIOND_PORT": "2222", "SESSIOND_RATE_LIMIT_PER_IP": "0"}, config_file=cfg)
    assert (s.port, s.host, s.rate_limit_per_ip) == (2222, "127.0.0.2", 0)
    s = config.load({"port": 3333, "host": None}, env={"SESSIOND_PORT": "2222"}, config_file=cfg)
    assert (s.port, s.host) == (3333, "127.0.0.2")
    assert s.workspace == ws.resolve() and s.sessions_dir == ws.resolve() / "sessions"
    assert TOKEN not in repr(s)


def test_config_flag_and_sessiond_table(tmp_path: Path) -> None:
    cfg = write_toml(
        tmp_path / "c.toml",
        f'[sessiond]\nworkspace = "{tmp_path}"\ntoken = "{TOKEN}"\ntrusted_proxies = ["127.0.0.1", "10.0.0.0/8"]\n',
    )
    s = config.load({"config": str(cfg)}, env={})
    assert [str(n) for n in s.trusted_proxies] == ["127.0.0.1/32", "10.0.0.0/8"]
    assert s.config_file == cfg.resolve()


def test_env_lists_and_bools(tmp_path: Path) -> None:
    env = {
        "SESSIOND_WORKSPACE": str(tmp_path),
        "SESSIOND_TOKEN": TOKEN,
        "SESSIOND_TRUSTED_PROXIES": "127.0.0.1, ::1,192.168.0.0/16",
        "SESSIOND_ACCESS_LOG": "0",
        "SESSIOND_LOG_LEVEL": "debug",
        "SESSIOND_UNIX": str(tmp_path / "s.sock"),
        "SESSIOND_UNIX_MODE": "600",
    }
    s = config.load({}, env=env)
    assert len(s.trusted_proxies) == 3
    assert s.access_log is False and s.log_level == "DEBUG"
    assert s.unix == tmp_path / "s.sock" and s.unix_mode == 0o600


def test_token_sources(tmp_path: Path) -> None:
    token_file = tmp_path / "tok"
    token_file.write_text(TOKEN + "-file\n")
    base = {"SESSIOND_WORKSPACE": str(tmp_path)}
    assert config.load({}, env={**base, "SESSIOND_TOKEN_FILE": str(token_file)}).token == TOKEN + "-file"
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "token").write_text(TOKEN + "-cred")
    assert config.load({}, env={**base, "CREDENTIALS_DIRECTORY": str(creds)}).token == TOKEN + "-cred"
    # the explicit token beats the file and the credential
    assert config.load({}, env={**base, "SESSIOND_TOKEN": TOKEN, "CREDENTIALS_DIRECTORY": str(creds)}).token == TOKEN


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"SESSIOND_TOKEN": ""}, "token"),
        ({"SESSIOND_TOKEN": "short"}, "token"),
        ({"SESSIOND_TOKEN": "has space in the token value"}, "token"),
        ({"SESSIOND_TOKEN_FILE": "/nonexistent/tok"}, "token_file"),
        ({"SESSIOND_PORT": "eighty"}, "SESSIOND_PORT"),
        ({"SESSIOND_PORT": "70000"}, "port"),
        ({"SESSIOND_RATE_LIMIT_PER_IP": "-1"}, "rate_limit_per_ip"),
        ({"SESSIOND_TRUSTED_PROXIES": "10.0.0.0/8,not-an-ip"}, "trusted_proxies"),
        ({"SESSIOND_LOG_LEVEL": "loud"}, "log_level"),
        ({"SESSIOND_ACCESS_LOG": "maybe"}, "SESSIOND_ACCESS_LOG"),
        ({"SESSIOND_UNIX_MODE": "999"}, "SESSIOND_UNIX_MODE"),
        ({"SESSIOND_WORKSPACE": "/nonexistent/ws"}, "workspace"),
        ({"SESSIOND_HOST": ""}, "host"),
    ],
)
def test_bad_settings_name_the_setting(tmp_path: Path, env: dict[str, str], names: str) -> None:
    full = {"SESSIOND_WORKSPACE": str(tmp_path), "SESSIOND_TOKEN": TOKEN, **env}
    if "SESSIOND_TOKEN_FILE" in env:
        del full["SESSIOND_TOKEN"]
    with pytest.raises(config.ConfigError) as info:
        config.load({}, env=full)
    message = str(info.value)
    assert message.startswith(names), message
    assert "\n" not in message
    assert TOKEN not in message


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("port = 'x'", "port"),
        ("bogus = 1", "config: unknown setting 'bogus'"),
        ("port = [", "config:"),
        ("access_log = 'yes'", "access_log"),
    ],
)
def test_bad_config_file(tmp_path: Path, text: str, names: str) -> None:
    cfg = write_toml(tmp_path / "c.toml", text)
    with pytest.raises(config.ConfigError, match="^" + names.replace("[", r"\[")):
        config.load({}, env={"SESSIOND_WORKSPACE": str(tmp_path), "SESSIOND_TOKEN": TOKEN}, config_file=cfg)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="does not exist"):
        config.load({}, env={}, config_file=tmp_path / "nope.toml")


def test_example_config_is_valid(tmp_path: Path) -> None:
    example = Path(__file__).parents[2] / "config" / "sessiond.toml"
    s = config.load({"workspace": str(tmp_path)}, env={"SESSIOND_TOKEN": TOKEN}, config_file=example)
    assert s.port == 8080


def test_force_polling_is_left_to_watchfiles_unless_configured(tmp_path: Path) -> None:
    """None lets watchfiles honour WATCHFILES_FORCE_POLLING and its own WSL/network-FS detection."""
    from sessiond import config

    (tmp_path / "sessions").mkdir()
    base = {"workspace": str(tmp_path), "token": "t" * 20}
    assert config.validate(base, env={}).force_polling is None
    assert config.validate({**base, "force_polling": False}, env={}).force_polling is False
    assert config.validate({**base, "force_polling": True}, env={}).force_polling is True
