"""README.md is the front door and docs/ the manual: every relative link and picture in them
resolves, every ``#anchor`` into a markdown file names one of its headings, and the front door
stays short and names the two set-up commands.

Anchors follow GitHub's rule: the heading's text, lowercased, punctuation other than ``-`` and
``_`` dropped, spaces turned into ``-``; a repeated heading gets ``-1``, ``-2``, ….
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from urllib.parse import unquote

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
README_MAX_BYTES = 12_000
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]
TOPICS = [
    "data",
    "training",
    "export",
    "serving",
    "client",
    "gateway",
    "deployment",
    "development",
    "performance",
]

FENCE = re.compile(r"^ {0,3}(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
# [text](target) and ![alt](target); the target may carry a "title".
MD_LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_LINK = re.compile(r"<(?:img|a|source)\b[^>]*?\b(?:src|href)\s*=\s*[\"']([^\"']+)[\"']", re.I)
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # http:, https:, mailto:, …


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line outside fenced code blocks."""
    lines, in_fence = [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            lines.append((number, line))
    return lines


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: markup dropped, lowercase, punctuation except - and _
    dropped, spaces → '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images → their text
    text = INLINE_CODE.sub(lambda m: m.group(2), text)
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML tags
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@cache
def anchors(page: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    found = set()
    for _, line in prose_lines(page.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        slug = github_anchor(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return frozenset(found)


def links(page: Path) -> list[tuple[int, str]]:
    """(line number, target) of every link and picture in the page's prose."""
    found = []
    for number, line in prose_lines(page.read_text(encoding="utf-8")):
        line = INLINE_CODE.sub("", line)
        for pattern in (MD_LINK, HTML_LINK):
            found.extend((number, m.group(1)) for m in pattern.finditer(line))
    return found


def broken_links(page: Path) -> list[str]:
    """What is wrong with each relative link of the page, as 'page:line: target: why'."""
    problems = []
    where = page.relative_to(REPO)
    for number, target in links(page):
        if not target or EXTERNAL.match(target):
            continue
        path_part, _, anchor = target.partition("#")
        path = (page.parent / unquote(path_part)).resolve() if path_part else page
        if not path.exists():
            problems.append(f"{where}:{number}: {target}: no such file")
        elif not path.is_relative_to(REPO):
            problems.append(f"{where}:{number}: {target}: outside the repository")
        elif anchor and path.suffix == ".md" and unquote(anchor) not in anchors(path):
            problems.append(f"{where}:{number}: {target}: no heading #{anchor} in {path.name}")
    return problems


def test_every_topic_has_its_page():
    missing = [t for t in TOPICS if not (REPO / "docs" / f"{t}.md").is_file()]
    assert missing == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_and_picture_resolves(page):
    assert broken_links(page) == []


def test_readme_links_every_docs_page():
    linked = {
        (README.parent / t.partition("#")[0]).resolve()
        for _, t in links(README)
        if t and not EXTERNAL.match(t) and not t.startswith("#")
    }
    missing = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert missing == []


def test_readme_is_a_short_front_door_with_the_two_commands():
    text = README.read_text(encoding="utf-8")
    size = len(text.encode("utf-8"))
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes; move detail into docs/"
    assert "make demo" in text
    assert "make test" in text


def test_a_broken_link_or_anchor_is_caught(tmp_path, monkeypatch):
    # The checker itself can fail: a missing file, a missing picture and a missing heading.
    monkeypatch.setattr(f"{__name__}.REPO", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# Title\n\n## Does it learn? (`x.y`)\n")
    page = tmp_path / "README.md"
    page.write_text(
        "[ok](docs/a.md#does-it-learn-xy) [gone](docs/b.md) ![pic](docs/img/none.png)\n"
        "[bad anchor](docs/a.md#nothing) [web](https://example.com) `[code](nowhere.md)`\n"
        '```\n[in a fence](nowhere.md)\n```\n<img src="docs/img/none.jpg" width="49%">\n'
    )
    problems = broken_links(page)
    assert [p.split(": ")[1] for p in problems] == [
        "docs/b.md",
        "docs/img/none.png",
        "docs/a.md#nothing",
        "docs/img/none.jpg",
    ]


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Does it learn?", "does-it-learn"),
        (
            "The tf.data pipeline (`training.data.pipeline.make_dataset`)",
            "the-tfdata-pipeline-trainingdatapipelinemake_dataset",
        ),
        ("Training (`python -m training train`)", "training-python--m-training-train"),
        (
            "Export verification report, ResNet-50, before the rewrites",
            "export-verification-report-resnet-50-before-the-rewrites",
        ),
        ("`make demo`", "make-demo"),
    ],
)
def test_github_anchor(heading, anchor):
    assert github_anchor(heading) == anchor
