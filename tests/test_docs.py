"""The documentation holds together: every relative link and anchor in README.md and docs/*.md
resolves, the front page stays short, every docs page opens with a table of contents, the
commands shown run from a fresh clone's environment, and `make help` matches docs/development.md.

Anchors are GitHub's: the heading's text, lower case, with punctuation other than - and _
removed and spaces turned into -; a repeated heading gets -1, -2, ... in order.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
FRONT_PAGE = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [FRONT_PAGE, *DOCS]
FRONT_PAGE_MAX_LINES = 220

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$")
# An inline link or image: [text](target) or [text](target "title").
LINK = re.compile(r"!?\[(?P<text>[^\]]*)\]\(\s*<?(?P<target>[^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
# A reference definition: [label]: target
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(?P<target>\S+?)>?(?:\s.*)?$", re.M)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)
MAKE_TARGET = re.compile(r"^(?P<target>[a-z][a-z0-9-]*):[^=\n]*?## (?P<help>.+)$", re.M)


def page_id(page: Path, root: Path = ROOT) -> str:
    return page.relative_to(root).as_posix()


def lines_outside_fences(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of every line that is not in a fenced code block, nor a fence."""
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        opened = FENCE.match(line)
        if fence is None and opened:
            fence = opened.group(1)[0] * 3
        elif fence is not None and opened and opened.group(1).startswith(fence):
            fence = None
        elif fence is None:
            yield number, line


@dataclass(frozen=True)
class Block:
    """A fenced code block: its info string and its lines."""

    info: str
    first_line: int
    lines: tuple[str, ...]


def fenced_blocks(text: str) -> list[Block]:
    blocks: list[Block] = []
    info, start, fence = "", 0, ""
    body: list[str] = []
    inside = False
    for number, line in enumerate(text.splitlines(), 1):
        opened = FENCE.match(line)
        if not inside and opened:
            inside, fence = True, opened.group(1)[0] * 3
            info, start, body = line.strip().lstrip("`~").strip(), number + 1, []
        elif inside and opened and opened.group(1).startswith(fence):
            inside = False
            blocks.append(Block(info, start, tuple(body)))
        elif inside:
            body.append(line)
    return blocks


def prose(text: str) -> str:
    """The text outside fenced code blocks and code spans (those cut out, lines kept)."""
    lines = dict(lines_outside_fences(text))
    kept = "\n".join(lines.get(n, "") for n in range(1, len(text.splitlines()) + 1))
    return CODE_SPAN.sub(lambda m: " " * len(m.group(0).replace("\n", "")), kept)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text (before the -1, -2 of repeated headings)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images: their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.replace("`", "").replace("*", "")
    text = re.sub(r"(?<!\w)_+|_+(?!\w)", "", text)  # _emphasis_, not snake_case
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def headings(page: Path) -> list[tuple[int, str]]:
    """(level, text) of every heading of PAGE, in order."""
    found = []
    for _, line in lines_outside_fences(page.read_text()):
        if match := HEADING.match(line):
            found.append((len(match.group(1)), match.group(2)))
    return found


def anchors(page: Path) -> list[str]:
    """The anchors of PAGE's headings, in order, repeated ones numbered as GitHub does."""
    seen: dict[str, int] = {}
    result = []
    for _, text in headings(page):
        base = slug(text)
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.append(base if count == 0 else f"{base}-{count}")
    return result


def links(page: Path) -> list[str]:
    """Every link target of PAGE outside code: inline links, images, reference definitions."""
    text = prose(page.read_text())
    return [m.group("target") for m in LINK.finditer(text)] + [
        m.group("target") for m in REFERENCE.finditer(text)
    ]


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """What is wrong with PAGE's relative links, one line each; external links are not read."""
    problems = []
    for target in links(page):
        if not target:
            problems.append("an empty link target")
            continue
        if SCHEME.match(target) or target.startswith("//"):
            continue  # http:, https:, mailto:: not checked here
        path_part, _, fragment = target.partition("#")
        linked = (page.parent / unquote(path_part)).resolve() if path_part else page
        if not linked.exists():
            problems.append(f"{target}: {path_part} does not exist")
        elif not linked.is_relative_to(root):
            problems.append(f"{target}: outside the repository")
        elif fragment and linked.suffix != ".md":
            problems.append(f"{target}: #{fragment} in a file that is not Markdown")
        elif fragment and unquote(fragment) not in anchors(linked):
            problems.append(f"{target}: no heading #{fragment} in {page_id(linked, root)}")
    return problems


def toc_anchors(page: Path) -> set[str]:
    """The #anchors linked from the bulleted list between the title and the first section."""
    before_first_section = []
    for _, line in lines_outside_fences(page.read_text()):
        if HEADING.match(line) and not line.lstrip().startswith("# "):
            break
        before_first_section.append(line)
    items = [line for line in before_first_section if re.match(r"^\s*[-*+] ", line)]
    return {m.group("target")[1:] for item in items for m in LINK.finditer(item)} - {""}


def broken_code_spans(page: Path) -> list[int]:
    """Lines where a code span opens and does not close on the same line."""
    broken = []
    for number, line in lines_outside_fences(page.read_text()):
        runs = [m.group() for m in re.finditer(r"`+", line)]
        while runs:
            opener = runs.pop(0)
            if opener not in runs:
                broken.append(number)
                break
            runs = runs[runs.index(opener) + 1 :]
    return broken


def shell_commands(block: Block) -> Iterator[tuple[int, str]]:
    """(line number, command) of each command a reader would type in a shell block: in a
    console block the lines after a `$ ` prompt, in a sh block every line that is not a comment
    or a continuation."""
    continued = False
    for offset, raw in enumerate(block.lines):
        line = raw.rstrip()
        if block.info == "console":
            command = line[2:] if line.startswith("$ ") else None
        elif block.info in ("sh", "bash", "shell"):
            command = None if continued or line.lstrip().startswith("#") else line
        else:
            return
        continued = line.endswith("\\")
        if command:
            yield block.first_line + offset, command


def bare_environment_commands(page: Path) -> list[str]:
    """Commands shown that need the environment on PATH, which a fresh clone does not have."""
    problems = []
    assignments = r"(?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)*"
    bare = re.compile(rf"^\s*(?:time\s+)?{assignments}(?P<tool>uv|faas|python|pytest|ruff|mypy)\s")
    for block in fenced_blocks(page.read_text()):
        for number, command in shell_commands(block):
            if match := bare.match(command):
                problems.append(f"line {number}: {match.group('tool')} is in .venv/bin: {command}")
    text = page.read_text()
    problems += [f"`uv run` in the text: {m.group(0)}" for m in re.finditer(r"uv run .*", text)]
    return problems


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    assert broken_links(page) == []


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_headings_have_distinct_anchors(page: Path) -> None:
    found = anchors(page)
    assert len(found) == len(set(found))


def test_the_front_page_is_short() -> None:
    lines = len(FRONT_PAGE.read_text().splitlines())
    assert lines <= FRONT_PAGE_MAX_LINES, f"README.md has {lines} lines"


def test_the_front_page_links_every_docs_page() -> None:
    linked = {
        (FRONT_PAGE.parent / target.partition("#")[0]).resolve()
        for target in links(FRONT_PAGE)
        if not SCHEME.match(target)
    }
    assert [page_id(page) for page in DOCS if page not in linked] == []


@pytest.mark.parametrize("page", DOCS, ids=page_id)
def test_every_docs_page_opens_with_a_table_of_its_sections(page: Path) -> None:
    sections = [anchor for (level, _), anchor in zip(headings(page), anchors(page), strict=True)
                if level == 2]  # fmt: skip
    assert sections, f"{page_id(page)} has no sections"
    listed = toc_anchors(page)
    assert [s for s in sections if s not in listed] == [], "sections missing from the contents"
    assert sorted(listed - set(anchors(page))) == [], "contents linking no heading of the page"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_code_spans_stay_on_one_line(page: Path) -> None:
    assert broken_code_spans(page) == []


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_commands_run_from_a_fresh_clone(page: Path) -> None:
    assert bare_environment_commands(page) == []


def test_make_help_is_in_the_development_page() -> None:
    makefile = (ROOT / "Makefile").read_text()
    described = {m.group("target"): m.group("help") for m in MAKE_TARGET.finditer(makefile)}
    phony = re.search(r"^\.PHONY:(.*)$", makefile, re.M)
    assert phony is not None
    assert [t for t in phony.group(1).split() if t not in described] == [], "targets with no ##"
    development = (ROOT / "docs" / "development.md").read_text()
    missing = [
        target
        for target, help_line in described.items()
        if not re.search(rf"^{re.escape(target)} +{re.escape(help_line)}$", development, re.M)
    ]
    assert missing == [], "make help lines not in docs/development.md"


def test_every_example_is_shown_on_the_deploy_page() -> None:
    deploy = (ROOT / "docs" / "deploy.md").read_text()
    examples = sorted((ROOT / "examples").glob("*.yaml"))
    assert examples
    assert [e.name for e in examples if e.read_text() not in deploy] == []


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Knative's metrics, and a dashboard", "knatives-metrics-and-a-dashboard"),
        ("The `faas` CLI", "the-faas-cli"),
        ("What cluster-up, cluster-status and cluster-down do",
         "what-cluster-up-cluster-status-and-cluster-down-do"),
        ("Run it and test it", "run-it-and-test-it"),
        ("snake_case and _emphasis_", "snake_case-and-emphasis"),
        ("A [link](x.md) in it", "a-link-in-it"),
    ],
)  # fmt: skip
def test_slugs_are_githubs(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_repeated_headings_are_numbered(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Page\n\n## Notes\n\n## Notes\n\n```\n## not a heading\n```\n\n## Notes\n")
    assert anchors(page) == ["page", "notes", "notes-1", "notes-2"]


def test_a_broken_link_or_anchor_is_reported(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other\n\n## Known section\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n[fine](other.md#known-section) [self](#page) [web](https://example.com)\n"
        "[gone](missing.md) [no anchor](other.md#unknown) `[in code](missing.md)`\n"
        "```\n[in a block](missing.md)\n```\n"
    )
    assert broken_links(page, root=tmp_path) == [
        "missing.md: missing.md does not exist",
        "other.md#unknown: no heading #unknown in other.md",
    ]
