"""Every relative link in the README, docs/, configs/ and the model cards points at a file that exists and, with a
``#fragment``, at one of that Markdown file's headings (GitHub's heading anchors)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CARDS = ROOT / "src" / "kdiqa" / "weights"
DOCS = ROOT / "docs"
PAGES = sorted([ROOT / "README.md", ROOT / "configs" / "README.md", *DOCS.rglob("*.md"), *CARDS.rglob("*.md")])
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} +(.+?) *#*$", re.M)
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped except ``-`` and ``_``, spaces to ``-``."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {anchor(h) for h in HEADING.findall(FENCE.sub("", page.read_text(encoding="utf-8")))}


def test_anchor_follows_github_rules():
    assert anchor("Tiers on shrunk views: ImageNet features at reduced resolution") == (
        "tiers-on-shrunk-views-imagenet-features-at-reduced-resolution"
    )
    assert anchor("After matching: joint stages, and views at the photos' own scale") == (
        "after-matching-joint-stages-and-views-at-the-photos-own-scale"
    )
    assert anchor("`kdiqa score` on a folder") == "kdiqa-score-on-a-folder"


def test_pages_are_found():
    assert {"README.md", "models.md", "results.md"} <= {p.name for p in PAGES}


def test_headings_inside_code_fences_are_not_anchors(tmp_path):
    page = tmp_path / "a.md"
    page.write_text("# Real heading\n\n```\n# not a heading\n```\n")
    assert anchors(page) == {"real-heading"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
            continue
        path, _, fragment = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            broken.append(f"{target}: no heading with that anchor in {dest.name}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)
