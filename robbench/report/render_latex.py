"""LaTeX: the outline as plain `tabular` fragments (no package needed) to \\input into a paper.

Each table of the outline is a `table` float with its caption; headings, paragraphs and lists become
`%` comments beside them, so the fragment stays tables only while keeping the outline's words (and
its order) for whoever edits the paper. Everything is escaped to pure ASCII for pdflatex.
"""

from __future__ import annotations

import unicodedata

from robbench.report.model import Board
from robbench.report.outline import Section, Table, outline

_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_LATEX_UNICODE = {"±": "$\\pm$", "—": "---", "–": "--", "ε": "$\\epsilon$", "⚠": "$^\\dagger$",
                  "≥": "$\\geq$", "≤": "$\\leq$", "≠": "$\\neq$", "μ": "$\\mu$", "σ": "$\\sigma$",
                  "Σ": "$\\Sigma$", "ŝ": "$\\hat{s}$", "·": "$\\cdot$", "×": "$\\times$", "−": "-", "…": "\\ldots{}",
                  "<": "$<$", ">": "$>$", "`": ""}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials and spell out the Unicode the boards use; the result is pure ASCII
    (any other non-ASCII character is transliterated or dropped), so pdflatex needs no inputenc."""
    out = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))
    for k, v in _LATEX_UNICODE.items():
        out = out.replace(k, v)
    if not out.isascii():
        out = unicodedata.normalize("NFKD", out).encode("ascii", "ignore").decode("ascii")
    return out


def _comment(text: str) -> list[str]:
    return ["% " + latex_escape(line.replace("**", "")) for line in text.splitlines() or [""]]


def _latex_table(t: Table) -> list[str]:
    out = ["\\begin{table}[ht]", "\\centering", "\\scriptsize", f"\\caption{{{latex_escape(t.caption)}}}",
           f"\\begin{{tabular}}{{{t.align}}}", "\\hline",
           " & ".join(latex_escape(h) for h in t.header) + " \\\\", "\\hline"]
    out += [" & ".join(latex_escape(c.plain.replace("**", "")) for c in r) + " \\\\" for r in t.rows]
    out += ["\\hline", "\\end{tabular}", "\\end{table}", ""]
    return out


def _section(s: Section) -> list[str]:
    if s.kind == "table":
        return _latex_table(s)
    if s.kind == "heading":
        return ["", *_comment(("== " if s.level == 1 else "-- ") + s.text)]
    if s.kind == "paragraph":
        return _comment(s.text)
    if s.kind == "list":
        return _comment(s.head) + [line for item in s.items for line in _comment("  - " + item)]
    return []  # figures: images are the HTML page's


def to_latex(boards: list[Board]) -> str:
    """Plain `tabular` fragments (no package needed): \\input them into a document."""
    out = ["% robbench leaderboards. Plain LaTeX tabulars, no packages needed; $^\\dagger$ marks flagged results.", ""]
    doc = outline(boards)
    if not doc.boards:
        return "\n".join(out + ["% No results yet."]) + "\n"
    for bo in doc.boards:
        for s in bo.sections:
            out += _section(s)
    return "\n".join(out) + "\n"
