"""Markdown: the outline as GitHub-flavoured markdown, for reading in a repository or a terminal.

Boards start at `###` so the page can sit under a document's own headings (reports/README.md embeds
parts of it); the document title and the plots are the HTML page's. Cells keep the inline marks
(`code`, **bold**) as they are: they are markdown already.
"""

from __future__ import annotations

from robbench.report.model import Board
from robbench.report.outline import Section, Table, outline


def _md_table(t: Table) -> list[str]:
    out = ["| " + " | ".join(t.header) + " |", "|" + "|".join(["---"] * len(t.header)) + "|"]
    out += ["| " + " | ".join(c.plain.replace("|", "\\|") for c in r) + " |" for r in t.rows]
    return out


def _section(s: Section) -> list[str]:
    if s.kind == "heading":
        return [("### " if s.level == 1 else "#### ") + s.text]
    if s.kind == "paragraph":
        return [f"_{s.text}_" if s.style == "empty" else f"> {s.text}" if s.style == "warn" else s.text]
    if s.kind == "list":
        return [s.head, *(f"- {item}" for item in s.items)]
    if s.kind == "table":
        return _md_table(s)
    return []  # figures: images are the HTML page's


def to_markdown(boards: list[Board]) -> str:
    doc = outline(boards)
    if not doc.boards:
        return f"_{doc.empty}_\n"
    out: list[str] = []
    for bo in doc.boards:
        for s in bo.sections:
            block = _section(s)
            if block:
                out += block + [""]
    return "\n".join(out)
