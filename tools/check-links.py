"""make lint: every relative link in the repository's Markdown pages resolves, to a file or folder that exists and,
with a #fragment into a Markdown page, to one of its headings (GitHub's anchors). Exits 1 naming each broken one.
Links to web addresses are not followed (no network here). Standard library only."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parent.parent
SKIPPED = {".git", "node_modules", ".venv", "bench-results", "chaos-results", "backups", "staticfiles"}
# [text](target "title") and [label]: target; images alike. Code spans and fenced blocks are removed first.
INLINE = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$", re.MULTILINE)
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
CODE = re.compile(r"`[^`\n]*`")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def pages() -> list[Path]:
    return sorted(
        path for path in ROOT.rglob("*.md") if not any(part in SKIPPED for part in path.relative_to(ROOT).parts)
    )


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lowercased, punctuation but hyphens dropped, spaces as hyphens, -1 on repeats."""
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(FENCE.sub("", page.read_text())):
        text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading)
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def broken_links(page: Path) -> list[str]:
    text = CODE.sub("", FENCE.sub("", page.read_text()))
    problems = []
    for target in INLINE.findall(text) + REFERENCE.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
            continue  # https:, mailto: and the like
        path_part, _, fragment = target.partition("#")
        resolved = (page.parent / unquote(path_part)).resolve() if path_part else page
        if not resolved.exists():
            problems.append(f"{target}: no such file or folder")
        elif fragment and resolved.suffix == ".md" and fragment.lower() not in anchors(resolved):
            problems.append(f"{target}: no heading #{fragment} in {resolved.relative_to(ROOT)}")
    return problems


def main() -> int:
    failed = 0
    checked = pages()
    for page in checked:
        for problem in broken_links(page):
            print(f"{page.relative_to(ROOT)}: broken link {problem}", file=sys.stderr)
            failed += 1
    if failed:
        print(f"check-links: {failed} broken link(s)", file=sys.stderr)
        return 1
    print(f"check-links: every relative link of {len(checked)} Markdown pages resolves")
    return 0


if __name__ == "__main__":
    sys.exit(main())
