"""The web page against a large workspace: first table paint, filter-to-table, /api/v1/stats.

    python -m bench.ui                 # 100,000 sessions (generated once, cached in bench/.cache)
    python -m bench.ui --sizes 10000   # quicker

A real sessiond on a generated workspace and Debian's chromium driven by Playwright,
as the browser tests do. Figures come from the page's own performance marks:

- first table paint: navigation start -> the first frame showing the sessions table
  (`sessiond:table-painted`), signed in already (the token in sessionStorage), so it
  covers loading the page, checking the token, opening the change feed and one list page;
- filter-to-table: `sessiond:filter-submitted` (the filter form sent, or the view's
  hash changed) -> the next `sessiond:table-painted`; the same query timed on the API
  alone says how much of it is the server;
- /api/v1/stats: the first request (the daemon made its full pass when its index was
  complete), repeats, and requests after a file changed (the change applied as a hint);
  and, in this process over the workspace's real metadata, what the full pass and one
  change cost the event loop.

Measured, not asserted: the figures are printed and written to bench/results/ui-*.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench import gen, servers
from tests.browser.chromium import CHROMIUM_ARGS

RESULTS = Path(__file__).resolve().parent / "results"
# (name, hash of the view, or the filter form's fields to submit)
VIEWS: list[tuple[str, str | None, dict[str, str]]] = [
    ("prefix telegram: (form)", None, {"Key prefix": "telegram:"}),
    ("prefix user:alice: (form)", None, {"Key prefix": "user:alice:"}),
    ("no filter, key order", "#/sessions", {}),
    ("no filter, updated desc", "#/sessions?sort=updated_at&order=desc", {}),
    ("messages >= 30, updated desc", "#/sessions?min_messages=30&sort=updated_at&order=desc", {}),
    ("prefix api:, 200 per page, messages desc", "#/sessions?prefix=api%3A&sort=message_count&order=desc&limit=200", {}),
]
PAINTED = "sessiond:table-painted"
SUBMITTED = "sessiond:filter-submitted"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_ms": round(statistics.median(ordered), 1),
        "p90_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))], 1),
        "min_ms": round(ordered[0], 1),
        "max_ms": round(ordered[-1], 1),
        "runs": len(ordered),
    }


def api_ms(base: str, path: str) -> float:
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {servers.TOKEN}"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as resp:
        resp.read()
    return (time.perf_counter() - started) * 1000


def list_query(hash_: str | None, fields: dict[str, str]) -> str:
    """The list request the page sends for a view (for timing the server alone)."""
    if hash_ is None:
        prefix = fields["Key prefix"]
        return f"/api/v1/sessions?prefix={urllib.request.quote(prefix)}&sort=key&order=asc&limit=50&include=meta"
    query = hash_.partition("?")[2]
    params = dict(p.split("=", 1) for p in query.split("&") if p)
    params = {"sort": "key", "order": "asc", "limit": "50", **params, "include": "meta"}
    return "/api/v1/sessions?" + "&".join(f"{k}={v}" for k, v in params.items())


def first_paint(browser: Any, base: str, runs: int) -> list[float]:
    """Fresh context per run (no cached files): navigation start -> table painted, in ms."""
    times = []
    for _ in range(runs):
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        context.add_init_script(f"sessionStorage.setItem('sessiond.token', {json.dumps(servers.TOKEN)})")
        page = context.new_page()
        page.goto(base + "/ui/")
        page.wait_for_function(f"() => performance.getEntriesByName({json.dumps(PAINTED)}).length > 0", timeout=120_000)
        times.append(page.evaluate(f"performance.getEntriesByName({json.dumps(PAINTED)})[0].startTime"))
        context.close()
    return times


def filter_to_table(page: Any, hash_: str | None, fields: dict[str, str]) -> float:
    """One filter applied in a signed-in page: submitted -> next table paint, in ms."""
    page.evaluate("performance.clearMarks()")
    if hash_ is None:
        form = page.get_by_role("search", name="Filter sessions")
        for label, value in fields.items():
            form.get_by_label(label, exact=True).fill(value)
        form.get_by_label("Key prefix", exact=True).press("Enter")
    else:
        # A view reached by its hash (a sort, a link): the same path as a submitted filter.
        page.evaluate(f"() => {{ performance.mark({json.dumps(SUBMITTED)}); location.hash = {json.dumps(hash_)}; }}")
    page.wait_for_function(f"() => performance.getEntriesByName({json.dumps(PAINTED)}).length > 0", timeout=120_000)
    return page.evaluate(
        f"performance.getEntriesByName({json.dumps(PAINTED)})[0].startTime"
        f" - performance.getEntriesByName({json.dumps(SUBMITTED)})[0].startTime"
    )


def reset(page: Any) -> None:
    """Back to an unfiltered first page, so the next run really changes the view."""
    page.evaluate("performance.clearMarks(); location.hash = '#/sessions?prefix=zz-none'")
    page.wait_for_function(f"() => performance.getEntriesByName({json.dumps(PAINTED)}).length > 0", timeout=120_000)


def api_json(base: str, path: str) -> Any:
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {servers.TOKEN}"})
    with urllib.request.urlopen(request, timeout=60) as resp:
        return json.loads(resp.read())


def aggregation_cost(base: str) -> dict[str, Any]:
    """The pure aggregates over the daemon's own metadata, timed here: full pass and one change."""
    from sessiond.core.index import FileStat, SessionRecord
    from sessiond.core.stats import SessionStats
    from sessiond.live.stats import BUILD_CHUNK

    records, cursor = [], None
    while True:
        page = api_json(base, "/api/v1/sessions?include=meta&limit=10000" + (f"&cursor={cursor}" if cursor else ""))
        records += [
            SessionRecord(m["key"], m["key"], m["message_count"], m["created_at"], m["updated_at"], FileStat(m["size"], 0, 0, 0))
            for m in page["sessions"]
        ]
        cursor = page["next_cursor"]
        if not cursor:
            break
    steps = []
    stats = SessionStats()
    for start in range(0, len(records), BUILD_CHUNK):
        began = time.perf_counter()
        stats.add_new(records[start : start + BUILD_CHUNK])
        steps.append((time.perf_counter() - began) * 1000)
    changes = []
    for record in records[:1000]:
        changed = SessionRecord(record.key, record.name, record.message_count + 1, record.created_at, time.time(), record.stat)
        began = time.perf_counter()
        stats.replace(record, changed)
        changes.append((time.perf_counter() - began) * 1e6)
    return {
        "records": len(records),
        "full_pass_ms": round(sum(steps), 1),
        "longest_step_ms": round(max(steps), 1),
        "steps": len(steps),
        "one_change_us": round(statistics.median(changes), 2),
        "mirror_mb": round(sys.getsizeof(stats._counted) / 1e6, 1),  # the key -> record map (records are shared)
    }


def stats_figures(daemon: servers.Server, workspace: Path) -> dict[str, Any]:
    base = daemon.base_url
    first = api_ms(base, "/api/v1/stats")
    repeat = [api_ms(base, "/api/v1/stats") for _ in range(20)]
    changed = []
    victim = next(p for p in sorted((workspace / "sessions").iterdir()) if p.suffix == ".json")
    original = victim.read_bytes()
    try:
        for i in range(10):
            doc = json.loads(original)
            doc["updated_at"] = time.time() + i
            victim.write_bytes(json.dumps(doc).encode())
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:  # wait for the watcher to apply it
                request = urllib.request.Request(
                    f"{base}/api/v1/sessions/{urllib.request.quote(doc['key'], safe='')}",
                    headers={"Authorization": f"Bearer {servers.TOKEN}"},
                )
                with urllib.request.urlopen(request, timeout=10) as resp:
                    if json.loads(resp.read())["updated_at"] == doc["updated_at"]:
                        break
                time.sleep(0.005)
            changed.append(api_ms(base, "/api/v1/stats"))
    finally:
        victim.write_bytes(original)
    return {
        "first_ms": round(first, 1),
        "repeat": summary(repeat),
        "after_a_change": summary(changed),
        "in_process": aggregation_cost(base),
        "rss_mb": servers.memory_mb(daemon.process.pid)["rss_mb"],
    }


def bench_size(size: int, args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    workspace = gen.generate(size, log=log)
    result: dict[str, Any] = {"sessions": size}
    with servers.Fleet(log_dir) as fleet:
        args_ = ["sessiond", "--workspace", str(workspace), "--host", "127.0.0.1", "--port", "{port}"]
        daemon = fleet.start("sessiond", args_, servers.SESSIOND_ENV, 60 + size / 1000)
        log(f"{size:,} sessions: sessiond ready in {daemon.ready_seconds:.1f} s")
        result["stats"] = stats_figures(daemon, workspace)
        log(f"  /api/v1/stats first {result['stats']['first_ms']} ms")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS, chromium_sandbox=False)
            first_paint(browser, daemon.base_url, 2)  # warm-up: the daemon's first list and stats, the browser's caches
            result["first_table_paint"] = summary(first_paint(browser, daemon.base_url, args.runs))
            log(f"  first table paint {result['first_table_paint']}")
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            context.add_init_script(f"sessionStorage.setItem('sessiond.token', {json.dumps(servers.TOKEN)})")
            page = context.new_page()
            page.goto(daemon.base_url + "/ui/")
            page.wait_for_function(f"() => performance.getEntriesByName({json.dumps(PAINTED)}).length > 0", timeout=120_000)
            views = {}
            for name, hash_, fields in VIEWS:
                timings, server = [], []
                for _ in range(args.runs):
                    reset(page)
                    timings.append(filter_to_table(page, hash_, fields))
                    server.append(api_ms(daemon.base_url, list_query(hash_, fields)))
                rows = page.locator("table.sessions tbody tr").count()
                count = page.locator(".sessions-view .summary").text_content()
                views[name] = {"page": summary(timings), "api_alone": summary(server), "rows": rows, "summary": count}
                log(f"  {name}: {views[name]['page']['median_ms']} ms (API alone {views[name]['api_alone']['median_ms']} ms)")
            result["filter_to_table"] = views
            if args.screenshot:
                reset(page)
                page.evaluate("document.activeElement && document.activeElement.blur()")
                page.evaluate("performance.clearMarks(); location.hash = '#/sessions?sort=updated_at&order=desc&limit=25'")
                page.wait_for_function(f"() => performance.getEntriesByName({json.dumps(PAINTED)}).length > 0")
                page.wait_for_timeout(300)
                page.screenshot(path=str(args.screenshot))
                log(f"  screenshot: {args.screenshot}")
            context.close()
            browser.close()
        result["rss_mb_after"] = servers.memory_mb(daemon.process.pid)["rss_mb"]
    return result


def report(results: dict[str, Any]) -> str:
    lines = [
        f"sessiond page benchmark · {results['cpus']} CPUs · chromium {results['chromium']} · "
        f"{results['runs']} runs each · load average at start {results['loadavg']}"
    ]
    for size in results["sizes"]:
        paint = size["first_table_paint"]
        stats = size["stats"]
        lines.append("")
        lines.append(f"{size['sessions']:,} sessions")
        lines.append(
            f"  first table paint (navigation -> table on screen)   median {paint['median_ms']:>7.1f} ms   "
            f"p90 {paint['p90_ms']:>7.1f} ms"
        )
        lines.append("  filter-to-table (submitted -> table on screen)      median      p90   API alone   shown")
        for name, view in size["filter_to_table"].items():
            lines.append(
                f"    {name:<44} {view['page']['median_ms']:>7.1f} {view['page']['p90_ms']:>8.1f}"
                f" {view['api_alone']['median_ms']:>10.1f}   {view['summary']}"
            )
        cost = stats["in_process"]
        lines.append(
            f"  /api/v1/stats: first request {stats['first_ms']} ms, then median {stats['repeat']['median_ms']} ms; "
            f"after a file changed median {stats['after_a_change']['median_ms']} ms (daemon RSS {stats['rss_mb']} MB)"
        )
        lines.append(
            f"  aggregates over {cost['records']:,} records: full pass {cost['full_pass_ms']} ms in {cost['steps']} "
            f"steps (longest {cost['longest_step_ms']} ms of the loop), one change {cost['one_change_us']} µs, "
            f"key map {cost['mirror_mb']} MB"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000", help="comma-separated session counts")
    parser.add_argument("--runs", type=int, default=15, help="repetitions of each measurement")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--screenshot", type=Path, help="also save the sessions view (1280x800) here")
    args = parser.parse_args(argv)
    if not os.path.exists(args.chromium):
        parser.error(f"no chromium at {args.chromium}: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        probe = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS, chromium_sandbox=False)
        version = probe.version
        probe.close()
    stamp = time.strftime("%Y%m%dT%H%M%S")
    log_dir = Path(tempfile.mkdtemp(prefix="sessiond-bench-ui-"))  # the daemon's log, if it fails
    args.output.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "chromium": version,
        "runs": args.runs,
        "loadavg": Path("/proc/loadavg").read_text().split()[0],
        "sizes": [bench_size(int(size), args, log_dir) for size in args.sizes.split(",")],
    }
    text = report(results)
    (args.output / f"ui-{stamp}.json").write_text(json.dumps(results, indent=2) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
