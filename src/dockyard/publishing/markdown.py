"""Markdown for publishers' texts (a company story, descriptions, instructions), rendered safely.

markdown-it-py (CommonMark) with raw HTML off, then nh3 (ammonia) keeps only harmless tags and attributes
and gives every link ``rel="nofollow noopener"``: nothing a publisher writes can run script on the store.
"""

from __future__ import annotations

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup

_md = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table").enable("strikethrough")
_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
    "i", "li", "ol", "p", "pre", "s", "strong", "table", "tbody", "td", "th", "thead", "tr", "ul",
}  # fmt: skip
_ATTRIBUTES = {"a": {"href", "title"}, "abbr": {"title"}, "th": {"align"}, "td": {"align"}}


def render_markdown(text: str) -> Markup:
    """Safe HTML of ``text`` (CommonMark; no raw HTML survives; links get rel="nofollow noopener")."""
    html = _md.render(text or "")
    return Markup(
        nh3.clean(
            html,
            tags=_TAGS,
            attributes=_ATTRIBUTES,
            url_schemes={"http", "https", "mailto"},
            link_rel="nofollow noopener",
        )
    )
