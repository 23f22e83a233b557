"""Every curl and sessionctl example in README.md and docs/*.md, run against `make run`'s demo.

Each ```sh block that holds an example gets a fresh `make run` (on a free port,
with the variables the block names before "make run" in a comment). Lines that
are not examples (TOKEN=..., export ...) are the block's set-up. The comment lines
right after an example are what it prints; tokens, ids, cursors, times and sizes
are normalised and `...` stands for anything. An example with no such lines must
answer 2xx. The daemon is asked for readiness first.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support import README, REPO, Demo

# Each test starts the real daemon as a process: `make test-quick` leaves them out.
pytestmark = pytest.mark.slow

# The README and every guide: the files whose examples are run, by their path in the repository.
PAGES = {"README.md": README} | {f"docs/{path.name}": path.read_text() for path in sorted((REPO / "docs").glob("*.md"))}
EXAMPLE = re.compile(r"^(curl|sessionctl) ")


@dataclass
class Example:
    command: str
    expected: list[str] = field(default_factory=list)
    setup: list[str] = field(default_factory=list)


@dataclass
class Block:
    page: str
    line: int
    env: dict[str, str]
    examples: list[Example]


def blocks(page: str, text: str) -> list[Block]:
    found = []
    for match in re.finditer(r"```sh\n(.*?)```", text, re.S):
        lines = match.group(1).splitlines()
        if not any(EXAMPLE.match(line) for line in lines):
            continue
        env: dict[str, str] = {}
        setup: list[str] = []
        examples: list[Example] = []
        current: Example | None = None
        for line in lines:
            if run := re.search(r"((?:[A-Z_]+=\S+ )+)make run", line):
                env.update(pair.split("=", 1) for pair in run.group(1).split())
            if line.startswith("# ") and current is not None:
                current.expected.append(line[2:])
                continue
            current = None
            if EXAMPLE.match(line):
                current = Example(line, setup=list(setup))
                examples.append(current)
            elif line and not line.startswith("#"):
                setup.append(line)
        found.append(Block(page, text.count("\n", 0, match.start()) + 2, env, examples))
    return found


def normalise(text: str) -> str:
    """Tokens, ids, cursors, times and sizes out; whitespace runs as one space."""
    text = re.sub(
        r'"(created_at|updated_at|age_seconds|deleted_at|purge_at|uptime_seconds|size|seq)":\s?[-\d.e+]+', r'"\1":N', text
    )
    text = re.sub(r'"(id|next_cursor)":\s?"[^"]*"', r'"\1":"X"', text)
    text = re.sub(r"^id: \d+$", "id: N", text, flags=re.M)
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", "TIME", text)
    text = re.sub(r"^age_seconds\s+\S+$", "age_seconds N", text, flags=re.M)
    return re.sub(r"[ \t]+", " ", text).strip()


def matches(expected: list[str], actual: str, anywhere: bool = False) -> bool:
    pattern = re.escape(normalise("\n".join(expected))).replace(r"\.\.\.", ".*?")
    finder = re.search if anywhere else re.fullmatch
    return finder(pattern, normalise(actual), re.S) is not None


@pytest.fixture
def cwd(tmp_path: Path) -> Path:
    """Where the examples run: `.run` and `.venv` as in a checkout after `make run`."""
    where = tmp_path / "checkout"
    where.mkdir()
    (where / ".venv").symlink_to(REPO / ".venv")
    return where


def run(cwd: Path, example: Example, port: int, timeout: float = 20) -> tuple[str, str, int]:
    script = "\n".join([*example.setup, example.command]).replace("127.0.0.1:8080", f"127.0.0.1:{port}")
    if example.command.startswith("curl "):
        script += " -s -w '%{stderr}HTTP %{http_code}'"
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={k: v for k, v in os.environ.items() if not k.startswith("SESSIOND_")},
    )
    return result.stdout, result.stderr, result.returncode


def stream(cwd: Path, example: Example, demo: Demo) -> str:
    """A curl -N example: read the feed for a moment; for the first, delete cli:default meanwhile."""
    script = "\n".join([*example.setup, example.command]).replace("127.0.0.1:8080", f"127.0.0.1:{demo.port}")
    proc = subprocess.Popen(
        ["bash", "-c", script], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True
    )
    time.sleep(1.0)
    if "Last-Event-ID" not in example.command:
        demo.delete("cli:default")
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    return out


BLOCKS = [block for page, text in PAGES.items() for block in blocks(page, text)]


def test_the_readme_and_the_guides_have_examples_with_their_output() -> None:
    examples = [e for b in BLOCKS for e in b.examples]
    assert len(examples) >= 25
    assert sum(1 for e in examples if e.expected) >= 18
    assert {b.page for b in BLOCKS} >= {"README.md", "docs/api.md", "docs/retention.md"}
    assert any("/trash" in e.command for e in examples)  # the demo's trash is on


def _run_block(block: Block, demo: Demo, cwd: Path) -> list[str]:
    failures = []
    for example in block.examples:
        if " -N " in example.command:
            out = stream(cwd, example, demo)
            if example.expected and not matches(example.expected, out, anywhere=True):
                failures.append(f"{example.command}\n  expected: {example.expected}\n  got: {out!r}")
            continue
        out, err, code = run(cwd, example, demo.port)
        if example.command.startswith("curl "):
            status = int(err.rsplit("HTTP ", 1)[1]) if "HTTP " in err else 0
            shown = out
            if not example.expected and not 200 <= status < 300:
                failures.append(f"{example.command}\n  status {status}: {out[:300]!r}")
                continue
            if example.expected and not matches(example.expected, shown):
                failures.append(f"{example.command}\n  expected: {example.expected}\n  got: {shown!r}")
        else:
            shown = out + err
            if code != 0 or (example.expected and not matches(example.expected, shown)):
                failures.append(f"{example.command}\n  exit {code}, expected: {example.expected}\n  got: {shown!r}")
    return failures


@pytest.mark.parametrize("block", BLOCKS, ids=[f"{b.page}:{b.line}" for b in BLOCKS])
def test_the_examples_print_what_the_docs_show(block: Block, cwd: Path) -> None:
    demo = Demo(cwd / ".run", block.env)
    try:
        failures = _run_block(block, demo, cwd)
    finally:
        demo.stop()
    assert not failures, "\n\n".join(failures)


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_links_of_the_readme_and_the_guides_lead_somewhere() -> None:
    broken = []
    for page, text in PAGES.items():
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # another site
            path, _, anchor = target.partition("#")
            file = ((REPO / page).parent / path).resolve() if path else REPO / page
            if not file.exists():
                broken.append(f"{page}: {target} (no such file)")
            elif anchor and file.suffix == ".md":
                headings = re.findall(r"^#+ (.*)$", re.sub(r"```.*?```", "", file.read_text(), flags=re.S), re.M)
                if anchor not in {_slug(h) for h in headings}:
                    broken.append(f"{page}: {target} (no such heading)")
    assert not broken, broken


def test_what_a_user_reads_tells_what_is_not_how_it_grew() -> None:
    bin_dir = Path(sys.executable).parent
    texts = dict(PAGES)
    texts |= {str(p.relative_to(REPO)): p.read_text() for p in (REPO / "sessiond" / "web" / "ui").iterdir() if p.is_file()}
    texts |= {str(p.relative_to(REPO)): p.read_text() for p in (REPO / "sessiond").rglob("openapi.py")}
    for command in ("sessiond", "sessionctl"):
        texts[f"{command} --help"] = subprocess.run(
            [str(bin_dir / command), "--help"], capture_output=True, text=True, check=True
        ).stdout
    assert [name for name, text in texts.items() if re.search(r"\bseed\b", text, re.I)] == []
