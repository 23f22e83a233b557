"""Settings of the features beyond the seed: parsed and validated like every other."""

from __future__ import annotations

from pathlib import Path

import pytest

from sessiond import config
from tests.support import TOKEN


def test_defaults_and_env(workspace: Path) -> None:
    base = {"workspace": str(workspace), "token": TOKEN}
    settings = config.validate(base, env={})
    assert (settings.trash_days, settings.events_buffer, settings.events_keepalive) == (0.0, 10_000, 15.0)
    env = {
        "SESSIOND_WORKSPACE": str(workspace),
        "SESSIOND_TOKEN": TOKEN,
        "SESSIOND_TRASH_DAYS": "2.5",
        "SESSIOND_EVENTS_BUFFER": "64",
        "SESSIOND_EVENTS_KEEPALIVE": "5",
    }
    settings = config.load(env=env)
    assert (settings.trash_days, settings.events_buffer, settings.events_keepalive) == (2.5, 64, 5.0)


@pytest.mark.parametrize(
    ("name", "value"),
    [("trash_days", -1), ("trash_days", "soon"), ("events_buffer", 0), ("events_buffer", 1.5), ("events_keepalive", 0)],
)
def test_bad_values_name_the_setting(workspace: Path, name: str, value: object) -> None:
    with pytest.raises(config.ConfigError, match=f"^{name}: "):
        config.validate({"workspace": str(workspace), "token": TOKEN, name: value}, env={})
