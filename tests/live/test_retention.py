"""Retention: the daemon cleans up old sessions by the rules, safely. Real files with old timestamps."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from sessiond import config
from sessiond.core.errors import SessionChanged
from sessiond.core.retention import RetentionRule, parse_rules, plan
from sessiond.live import retention as retention_run
from sessiond.live.retention import Retention
from sessiond.web.appkeys import RETENTION
from tests.support import AUTH, Daemon, eventually, immutable, open_store, store_of, write_atomic

DAY = 86400.0
RULES = [{"prefix": "telegram:", "idle_days": 30}, {"prefix": "api:", "idle_days": 7}]


def aged(folder: Path, key: str, days: float, messages: int = 1) -> Path:
    """A session last updated *days* ago, in a file untouched as long."""
    stamp = time.time() - days * DAY
    path = write_atomic(folder, key, messages=messages, created=stamp - 10, updated=stamp)
    os.utime(path, (stamp, stamp))
    return path


async def runs(client: TestClient) -> Any:
    return client.server.app[RETENTION]  # type: ignore[union-attr]


async def settle(client: TestClient, keys: int) -> None:
    await eventually(lambda: len(store_of(client).index) == keys)


async def test_the_right_sessions_go_and_everything_else_is_kept(start_client: Any, sessions: Path) -> None:
    for key, days in [("telegram:old", 40), ("telegram:new", 3), ("api:old", 8), ("api:new", 1), ("cli:ancient", 900)]:
        aged(sessions, key, days)
    client = await start_client(retention=RULES, trash_days=7)
    await settle(client, 5)
    feed = await client.get("/api/v1/events", headers=AUTH)
    report = await (await runs(client)).run_once()
    assert report.outcome == "deleted" and report.deleted == {"telegram:": 1, "api:": 1}
    listing = await (await client.get("/api/v1/sessions", headers=AUTH)).json()
    assert listing["sessions"] == ["api:new", "cli:ancient", "telegram:new"]
    trash = await (await client.get("/api/v1/trash", headers=AUTH)).json()
    assert sorted(item["key"] for item in trash["items"]) == ["api:old", "telegram:old"]  # through DELETE: into the trash
    seen = b""
    while seen.count(b"event: deleted") < 2:
        seen += await asyncio.wait_for(feed.content.readany(), 3)
    assert b"telegram:old" in seen and b"api:old" in seen
    feed.close()
    metrics = await (await client.get("/metrics", headers=AUTH)).text()
    assert 'sessiond_retention_deleted_total{rule="telegram:"} 1.0' in metrics
    assert 'sessiond_retention_last_run_outcome{outcome="deleted"} 1.0' in metrics
    shown = await (await client.get("/api/v1/retention", headers=AUTH)).json()
    assert shown["last_run"]["deleted"] == 2 and shown["rules"][0] == {
        "prefix": "telegram:",
        "idle_days": 30.0,
        "keep_at_most": None,
    }
    assert shown["preview"]["total"] == 0


async def test_a_cap_keeps_the_newest(start_client: Any, sessions: Path) -> None:
    for i in range(6):
        aged(sessions, f"slack:{i}", 10 - i)
    client = await start_client(retention=[{"prefix": "slack:", "keep_at_most": 2}])
    await settle(client, 6)
    preview = await (await client.get("/api/v1/retention", headers=AUTH)).json()
    assert preview["preview"]["rules"] == [
        {"rule": "slack:", "count": 4, "files": 4, "sample": ["slack:0", "slack:1", "slack:2", "slack:3"], "collisions": {}}
    ]
    await (await runs(client)).run_once()
    assert list(store_of(client).index.keys()) == ["slack:4", "slack:5"]


async def test_over_the_maximum_nothing_goes(start_client: Any, sessions: Path, caplog: pytest.LogCaptureFixture) -> None:
    for i in range(5):
        aged(sessions, f"telegram:{i}", 60)
    client = await start_client(retention=RULES, retention_max_per_run=4)
    await settle(client, 5)
    report = await (await runs(client)).run_once()
    assert report.outcome == "over_maximum" and "5 sessions match" in (report.reason or "")
    assert len(store_of(client).index) == 5 and len(list(sessions.glob("*.json"))) == 5
    assert any("over_maximum" in r.message and r.levelname == "WARNING" for r in caplog.records)


async def test_recent_sessions_are_never_touched(start_client: Any, sessions: Path) -> None:
    stamp = time.time() - 90 * DAY
    write_atomic(sessions, "telegram:restored", created=stamp, updated=stamp)  # old content, file written just now
    write_atomic(sessions, "telegram:talking", created=stamp, updated=time.time() - 30)  # updated a moment ago
    aged(sessions, "telegram:idle", 90)
    client = await start_client(retention=[{"prefix": "", "idle_days": 1, "keep_at_most": 0}])
    await settle(client, 3)
    report = await (await runs(client)).run_once()
    assert report.spared_recent == 2 and report.deleted == {"*": 1}
    assert sorted(store_of(client).index.keys()) == ["telegram:restored", "telegram:talking"]


async def test_a_dry_run_touches_nothing(start_client: Any, sessions: Path) -> None:
    aged(sessions, "telegram:old", 40)
    client = await start_client(retention=RULES, retention_dry_run=True)
    await settle(client, 1)
    report = await (await runs(client)).run_once()
    assert report.outcome == "dry_run" and report.matched == {"telegram:": 1, "api:": 0}
    assert (sessions / "telegram_old.json").exists() and "telegram:old" in store_of(client).index


async def test_the_timer_runs_the_rules_once_the_index_is_whole(start_client: Any, sessions: Path) -> None:
    aged(sessions, "api:stale", 30)
    client = await start_client(retention=RULES, retention_interval=1)
    await eventually(lambda: "api:stale" not in store_of(client).index, timeout=4)
    assert not (sessions / "api_stale.json").exists()


async def test_no_run_before_the_first_index_is_whole(start_client: Any, sessions: Path) -> None:
    aged(sessions, "api:stale", 30)
    client = await start_client(retention=RULES, retention_interval=3600)
    await settle(client, 1)
    running = await runs(client)
    whole = asyncio.Event()  # the first index, not yet whole
    early = Retention(running.store, running.runtime, whole)
    task = asyncio.create_task(early.forever())
    try:
        await asyncio.sleep(0.2)
        assert early.next_at is None and early.last is None  # not even counting down
        whole.set()
        await eventually(lambda: early.next_at is not None)
        assert early.next_at > time.time() + 3000 and early.last is None
        assert (sessions / "api_stale.json").exists()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_delete_the_file_system_refuses_is_reported_and_the_rest_goes_on(
    start_client: Any, sessions: Path, caplog: pytest.LogCaptureFixture
) -> None:
    aged(sessions, "api:stuck", 30)
    aged(sessions, "api:old", 30)
    with immutable(sessions / "api_stuck.json"):  # before the scan: chattr moves the file's ctime
        client = await start_client(retention=RULES)
        await settle(client, 2)
        report = await (await runs(client)).run_once()
    assert report.outcome == "partial" and report.deleted == {"api:": 1}  # some went, some failed
    assert [failure["key"] for failure in report.failed] == ["api:stuck"]
    assert (sessions / "api_stuck.json").exists() and not (sessions / "api_old.json").exists()
    shown = await (await client.get("/api/v1/retention", headers=AUTH)).json()
    assert shown["last_run"]["failed"][0]["key"] == "api:stuck" and "/" not in shown["last_run"]["failed"][0]["reason"]
    assert any("1 failed" in r.message and r.levelname == "WARNING" for r in caplog.records)
    metrics = await (await client.get("/metrics", headers=AUTH)).text()
    stamp = next(line for line in metrics.splitlines() if line.startswith("sessiond_retention_last_run_timestamp_seconds "))
    assert abs(float(stamp.split()[1]) - report.started_at) < 1


async def test_a_run_whose_every_delete_failed_says_failed(start_client: Any, sessions: Path) -> None:
    stuck = [aged(sessions, f"api:stuck{i}", 30) for i in range(3)]
    with contextlib.ExitStack() as held:
        for path in stuck:
            held.enter_context(immutable(path))
        client = await start_client(retention=RULES)
        await settle(client, 3)
        report = await (await runs(client)).run_once()
    assert report.outcome == "failed" and report.deleted == {} and len(report.failed) == 3
    shown = (await (await client.get("/api/v1/retention", headers=AUTH)).json())["last_run"]
    assert (shown["outcome"], shown["deleted"], len(shown["failed"])) == ("failed", 0, 3)
    metrics = await (await client.get("/metrics", headers=AUTH)).text()
    assert 'sessiond_retention_last_run_outcome{outcome="failed"} 1.0' in metrics
    assert 'sessiond_retention_last_run_outcome{outcome="deleted"} 0.0' in metrics
    document = await (await client.get("/api/v1/openapi.json", headers=AUTH)).json()
    last_run = document["paths"]["/api/v1/retention"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert {"failed", "partial"} <= set(last_run["properties"]["last_run"]["properties"]["outcome"]["enum"])


async def test_a_session_rewritten_after_it_was_judged_stays(sessions: Path) -> None:
    aged(sessions, "api:busy", 30)
    store = open_store(sessions)
    await store.scan()
    judged = store.index.get("api:busy")
    write_atomic(sessions, "api:busy", messages=5)  # the agent writes it again before the run gets to it
    with pytest.raises(SessionChanged):
        await store.delete("api:busy", expected=judged)
    assert json.loads((sessions / "api_busy.json").read_bytes())["messages"] != []


@pytest.mark.slow
def test_a_reload_changes_the_rules(workspace: Path, tmp_path: Path) -> None:
    sessions = workspace / "sessions"
    aged(sessions, "telegram:old", 40)
    aged(sessions, "api:old", 40)
    conf = tmp_path / "sessiond.toml"
    conf.write_text('retention_interval = 1\n[[retention]]\nprefix = "telegram:"\nidle_days = 30\n')
    with Daemon(workspace, "--config", str(conf)) as d:
        d.wait_ready()
        deadline = time.monotonic() + 5
        while (sessions / "telegram_old.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not (sessions / "telegram_old.json").exists() and (sessions / "api_old.json").exists()
        conf.write_text('retention_interval = 1\n[[retention]]\nprefix = "api:"\nidle_days = 7\n')
        d.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 6
        while (sessions / "api_old.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not (sessions / "api_old.json").exists()
        shown = json.loads(d.get("/api/v1/retention")[1])
        assert shown["rules"] == [{"prefix": "api:", "idle_days": 7.0, "keep_at_most": None}]
        assert d.stop() == 0
    assert d.output().count("retention: deleted; 1 matched, 1 deleted") == 2  # one line per run that did something


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({"prefix": "a:"}, "give idle_days, keep_at_most or both"),
        ({"prefix": "a:", "idle_days": -1}, "idle_days must be a number of days above 0"),
        ({"prefix": "a:", "keep_at_most": 1.5}, "keep_at_most must be a whole number"),
        ({"prefix": 3, "idle_days": 1}, "prefix must be text"),
        ({"prefx": "a:", "idle_days": 1}, "unknown field 'prefx'"),
    ],
)
def test_bad_rules_are_one_line_errors(workspace: Path, raw: dict[str, Any], problem: str) -> None:
    with pytest.raises(config.ConfigError, match=problem) as info:
        config.validate({"workspace": str(workspace), "token": "t" * 20, "retention": [raw]}, env={})
    assert str(info.value).startswith("retention: rule 1") and "\n" not in str(info.value)


def test_rules_parse_with_the_first_match_deciding() -> None:
    assert parse_rules([{"prefix": "api:", "idle_days": 7}, {"idle_days": 30}]) == (
        RetentionRule("api:", 7.0, None),
        RetentionRule("", 30.0, None),
    )
    with pytest.raises(ValueError, match="already has a rule"):
        parse_rules([{"prefix": "a", "idle_days": 1}, {"prefix": "a", "keep_at_most": 2}])


@pytest.mark.slow
def test_a_reload_that_shortens_the_interval_applies_at_once(workspace: Path, tmp_path: Path) -> None:
    """A wait already under way does not hold a shorter interval back (it was up to an hour)."""
    sessions = workspace / "sessions"
    aged(sessions, "telegram:old", 40)
    conf = tmp_path / "sessiond.toml"
    rule = '[[retention]]\nprefix = "telegram:"\nidle_days = 30\n'
    conf.write_text("retention_interval = 3600\n" + rule)
    with Daemon(workspace, "--config", str(conf)) as d:
        d.wait_ready()
        before = json.loads(d.get("/api/v1/retention")[1])
        assert before["next_run_at"] > time.time() + 3000
        conf.write_text("retention_interval = 1\n" + rule)
        d.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 8
        while (sessions / "telegram_old.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not (sessions / "telegram_old.json").exists()
        assert json.loads(d.get("/api/v1/retention")[1])["next_run_at"] < time.time() + 5


SHADOWED = '[[retention]]\nprefix = "tg:"\nidle_days = 7\n[[retention]]\nprefix = "tg:vip:"\nidle_days = 365\n'
SHADOW_REASON = "rule 2: prefix 'tg:vip:' is shadowed by rule 1 (prefix 'tg:'), which decides for every key it would"


@pytest.mark.slow
def test_a_rule_shadowed_by_an_earlier_shorter_prefix_is_refused(workspace: Path, tmp_path: Path) -> None:
    """`tg:` then `tg:vip:`: the second rule would never decide, so tg:vip:alice idle 30 days would go at 7."""
    with pytest.raises(ValueError, match="order the longer prefix first") as info:
        parse_rules([{"prefix": "tg:", "idle_days": 7}, {"prefix": "tg:vip:", "idle_days": 365}])
    assert str(info.value).startswith(SHADOW_REASON)
    with pytest.raises(ValueError, match=r"rule 2: prefix 'a:' is shadowed by rule 1 \(prefix ''\)"):
        parse_rules([{"idle_days": 30}, {"prefix": "a:", "idle_days": 1}])  # every key: nothing may follow
    # the longer prefix first is what the operator meant, and is accepted
    assert len(parse_rules([{"prefix": "tg:vip:", "idle_days": 365}, {"prefix": "tg:", "idle_days": 7}])) == 2

    conf = tmp_path / "sessiond.toml"
    conf.write_text(SHADOWED)
    checked = subprocess.run(
        [sys.executable, "-m", "sessiond", "check-config", "--config", str(conf), "--workspace", str(workspace)],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("SESSIOND_")}, "SESSIOND_TOKEN": "t" * 20},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert checked.returncode == 2 and SHADOW_REASON in checked.stderr and "order the longer prefix first" in checked.stderr

    # a reload to such rules is refused and the running rules stay
    conf.write_text('[[retention]]\nprefix = "tg:"\nidle_days = 7\n')
    with Daemon(workspace, "--config", str(conf)) as d:
        d.wait_ready()
        conf.write_text(SHADOWED)
        d.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while "reload refused" not in d.output() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert SHADOW_REASON in d.output()
        shown = json.loads(d.get("/api/v1/retention")[1])
        assert shown["rules"] == [{"prefix": "tg:", "idle_days": 7.0, "keep_at_most": None}]
        assert d.stop() == 0
    # and so is a start
    with Daemon(workspace, "--config", str(conf)) as d:
        assert d.proc.wait(15) == 2 and SHADOW_REASON in d.output()


async def test_retention_spares_a_file_written_within_the_grace_period_whichever_key_it_holds(
    start_client: Any, sessions: Path
) -> None:
    """Two files claim tg:x: the served one old, the other old in content but written 5 s ago."""
    aged(sessions, "tg:x", 100)
    backup = write_atomic(
        sessions, "tg:x", name="tg_x.backup.json", created=time.time() - 201 * DAY, updated=time.time() - 200 * DAY
    )
    just_now = time.time() - 5
    os.utime(backup, (just_now, just_now))
    client = await start_client(retention=[{"prefix": "tg:", "idle_days": 1}], trash_days=7)
    await eventually(lambda: store_of(client).index.collision_count == 1)
    shown = await (await client.get("/api/v1/retention", headers=AUTH)).json()
    assert shown["preview"]["total"] == 0 and shown["preview"]["spared_recent"] == 1
    report = await (await runs(client)).run_once()
    assert report.outcome == "nothing" and report.deleted == {} and report.spared_recent == 1
    assert (sessions / "tg_x.json").exists() and backup.exists()
    assert (await (await client.get("/api/v1/trash", headers=AUTH)).json())["items"] == []


async def test_the_preview_and_the_report_count_every_file_that_goes(start_client: Any, sessions: Path) -> None:
    aged(sessions, "tg:x", 100)
    old_copy = write_atomic(sessions, "tg:x", name="tg_x.backup.json", updated=time.time() - 200 * DAY)
    os.utime(old_copy, (time.time() - 150 * DAY,) * 2)
    aged(sessions, "tg:y", 100)
    client = await start_client(retention=[{"prefix": "tg:", "idle_days": 1}], trash_days=7)
    await eventually(lambda: store_of(client).index.collision_count == 1 and "tg:y" in store_of(client).index)
    preview = (await (await client.get("/api/v1/retention", headers=AUTH)).json())["preview"]
    assert preview["total"] == 2 and preview["total_files"] == 3
    assert preview["rules"] == [
        {
            "rule": "tg:",
            "count": 2,
            "files": 3,
            "sample": ["tg:x", "tg:y"],
            "collisions": {"tg:x": ["tg_x.json", "tg_x.backup.json"]},
        }
    ]
    await (await runs(client)).run_once()
    last = (await (await client.get("/api/v1/retention", headers=AUTH)).json())["last_run"]
    assert (last["matched"], last["matched_files"], last["deleted"], last["deleted_files"]) == (2, 3, 2, 3)
    assert last["by_rule"] == {"tg:": {"matched": 2, "matched_files": 3, "deleted": 2, "deleted_files": 3}}
    trash = (await (await client.get("/api/v1/trash", headers=AUTH)).json())["items"]
    assert sorted(item["key"] for item in trash) == ["tg:x", "tg:x", "tg:y"]


async def test_a_file_claiming_the_key_after_it_was_judged_stays(sessions: Path) -> None:
    """The plan judged tg:x by its one file; a second file claiming it since (older content,
    just written) is not part of what was judged: the key stays whole."""
    aged(sessions, "tg:x", 100)
    store = open_store(sessions)
    await store.scan()
    (judged,) = plan(store.index, [RetentionRule("tg:", 1.0)], time.time(), 600)
    (record,) = judged.doomed
    late = write_atomic(sessions, "tg:x", name="tg_x.backup.json", updated=time.time() - 200 * DAY)
    await store.refresh([late.name])
    with pytest.raises(SessionChanged):
        await store.delete("tg:x", expected=record, files=judged.files[record.key])
    assert late.exists() and (sessions / "tg_x.json").exists()


async def test_a_session_restored_from_the_trash_is_not_deleted_again_by_retention(start_client: Any, sessions: Path) -> None:
    """Restore keeps the file's mtime and updated_at, so the next run would judge it as before.
    The operator's restore sticks: across a restart, with the trash turned off since, until
    the file changes."""
    aged(sessions, "tg:old", 100)
    rules = [{"prefix": "tg:", "idle_days": 1}]
    client = await start_client(retention=rules, trash_days=7)
    await settle(client, 1)
    assert (await (await runs(client)).run_once()).deleted == {"tg:": 1}
    resp = await client.post("/api/v1/trash:restore", json={"keys": ["tg:old"]}, headers=AUTH)
    assert len((await resp.json())["restored"]) == 1
    preview = (await (await client.get("/api/v1/retention", headers=AUTH)).json())["preview"]
    assert (preview["total"], preview["spared_restored"]) == (0, 1)
    report = await (await runs(client)).run_once()
    assert report.outcome == "nothing" and report.spared_restored == 1
    assert (sessions / "tg_old.json").exists()
    await client.close()

    # a restart (the trash turned off meanwhile) remembers it
    client = await start_client(retention=rules, trash_days=0)
    await settle(client, 1)
    report = await (await runs(client)).run_once()
    assert report.deleted == {} and report.spared_restored == 1 and (sessions / "tg_old.json").exists()

    # once the file changes, the rules judge it again (here: rewritten with old content and times)
    aged(sessions, "tg:old", 100, messages=2)
    await eventually(lambda: store_of(client).index.get("tg:old").message_count == 2)
    report = await (await runs(client)).run_once()
    assert report.deleted == {"tg:": 1} and not (sessions / "tg_old.json").exists()


async def test_a_restore_mark_is_forgotten_once_its_file_changed(
    start_client: Any, sessions: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    aged(sessions, "tg:old", 100)
    client = await start_client(retention=[{"prefix": "tg:", "idle_days": 1}], trash_days=7)
    await settle(client, 1)
    await store_of(client).delete("tg:old")
    await client.post("/api/v1/trash:restore", json={"keys": ["tg:old"]}, headers=AUTH)
    marks = sessions / ".trash" / "restored"
    assert len(list(marks.iterdir())) == 1
    write_atomic(sessions, "tg:old", messages=3)  # the agent carries on with it
    await eventually(lambda: store_of(client).index.get("tg:old").message_count == 3)
    await (await runs(client)).run_once()
    assert len(list(marks.iterdir())) == 1  # a moment after the restore, the index may not show it yet
    monkeypatch.setattr(retention_run, "MARK_SETTLE", 0.0)
    await (await runs(client)).run_once()
    assert list(marks.iterdir()) == [] and (sessions / "tg_old.json").exists()


async def test_a_restore_that_cannot_be_remembered_changes_nothing_and_retention_waits(start_client: Any, sessions: Path) -> None:
    aged(sessions, "tg:old", 100)
    aged(sessions, "tg:other", 100)
    client = await start_client(retention=[{"prefix": "tg:", "idle_days": 1}], trash_days=7)
    await settle(client, 2)
    await store_of(client).delete("tg:old")
    (sessions / ".trash" / "restored").write_text("in the way")
    resp = await client.post("/api/v1/trash:restore", json={"keys": ["tg:old"]}, headers=AUTH)
    (failure,) = (await resp.json())["failed"]
    assert "sessions/.trash/restored" in failure["reason"] and "not a directory" in failure["reason"]
    assert not (sessions / "tg_old.json").exists()
    assert [i["key"] for i in (await (await client.get("/api/v1/trash", headers=AUTH)).json())["items"]] == ["tg:old"]
    # unable to tell what was restored, a run deletes nothing and says why
    report = await (await runs(client)).run_once()
    assert report.outcome == "failed" and "restore marks" in (report.reason or "") and report.deleted == {}
    assert (sessions / "tg_other.json").exists()
