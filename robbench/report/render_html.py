"""HTML: the outline as one self-contained page, through the Jinja2 template templates/board.html.j2.

The page must open from a file or a mail attachment, so nothing is fetched: the stylesheet
(templates/board.css) and the small script (templates/board.js: sortable columns, ranking columns that
stay in view) are inlined, and the plots are inline base64 PNGs (robbench.report.plots). The template
autoescapes everything it prints; the outline's inline marks (`code`, **bold**) become tags only after
escaping (`inline`), so no text from a results store can add markup to the page.
"""

from __future__ import annotations

import re
from functools import cache

from markupsafe import Markup, escape

from robbench.report.model import Board
from robbench.report.outline import outline
from robbench.report.plots import figures


def inline(text: object) -> Markup:
    """Escape, then turn the outline's `code` and **bold** marks into tags."""
    out = str(escape(str(text)))
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return Markup(out)


@cache
def _environment():
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(loader=PackageLoader("robbench.report", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=False, lstrip_blocks=False)
    env.filters["inline"] = inline
    return env


def _asset(name: str) -> Markup:
    """A file of templates/ to inline verbatim (ours, not data: it is trusted as markup)."""
    loader = _environment().loader
    source, _, _ = loader.get_source(_environment(), name)
    return Markup(source)


def to_html(boards: list[Board]) -> str:
    """One self-contained page: boards as tables, plots as inline base64 PNGs, inline CSS."""
    doc = outline(boards)
    plots = {bo.anchor: figures(bo.board, bo.analysis) for bo in doc.boards}
    page = _environment().get_template("board.html.j2").render(
        doc=doc, figures=plots, css=_asset("board.css"), script=_asset("board.js"))
    return page.lstrip() + ("" if page.endswith("\n") else "\n")
