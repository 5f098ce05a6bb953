"""Markdown as the store shows it: CommonMark with tables and strikethrough, rendered by markdown-it-py with
raw HTML off, then sanitised by nh3 (allow-listed tags and attributes only), so whatever a publisher writes
cannot run script, load a tracker from a ``data:`` or ``javascript:`` URL, or pass rank to a link."""

from __future__ import annotations

from functools import cache

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup

# What CommonMark, tables and strikethrough produce; nothing else survives the sanitiser.
TAGS = {
    "a", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "img", "li",
    "ol", "p", "pre", "s", "strong", "table", "tbody", "td", "th", "thead", "tr", "ul",
}  # fmt: skip
ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "ol": {"start"},
    "td": {"align"},
    "th": {"align"},
    "code": {"class"},  # the fenced block's language ("language-sh")
}
# Links may be web or mail links; images only web ones (a data: image could be anything, and large).
LINK_SCHEMES = {"http", "https", "mailto"}
IMAGE_SCHEMES = {"http", "https"}


@cache
def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    return md


def _only_web_images(tag: str, attribute: str, value: str) -> str | None:
    if tag == "img" and attribute == "src":
        scheme = value.split(":", 1)[0].lower() if ":" in value else ""
        return value if scheme in IMAGE_SCHEMES else None
    if tag == "code" and attribute == "class":
        return value if value.startswith("language-") and value.replace("-", "").isalnum() else None
    return value


def render_markdown(text: str, *, headings_from: int = 1) -> Markup:
    """``text`` (Markdown) as safe HTML: no raw HTML, links rel="nofollow noopener", images only http(s).

    ``headings_from``: the level a ``#`` heading gets, the others following (capped at h6), so a
    publisher's headings sit under the page's own (a product page's sections are h2: its Markdown starts
    at h3) and the page keeps one h1 and headings in order."""
    md = _parser()
    tokens = md.parse(text or "")
    if headings_from > 1:
        for token in tokens:
            if token.type in ("heading_open", "heading_close"):
                level = min(6, int(token.tag[1]) + headings_from - 1)
                token.tag = f"h{level}"
    html = md.renderer.render(tokens, md.options, {})
    clean = nh3.clean(
        html,
        tags=TAGS,
        attributes=ATTRIBUTES,
        url_schemes=LINK_SCHEMES,
        link_rel="nofollow noopener",
        attribute_filter=_only_web_images,
        strip_comments=True,
    )
    return Markup(clean)  # nh3's output: the sanitised HTML
