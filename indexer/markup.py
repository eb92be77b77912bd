"""Plain text from a catalog field that carries HTML ("<p>Dual <b>USB</b> ports</p>").

Shops export descriptions as the HTML their product pages show. Left in, the markup spends
the bi-encoder's word pieces on ``li`` and ``strong`` and gives BM25 words no shopper
types (``nbsp``). A field with tags or character references loses its tags (and what
``script`` and ``style`` hold), has its references decoded and its whitespace collapsed;
a tag that breaks the flow of text (``p``, ``li``, ``br``, ``td``...) leaves a space, one
that styles words inside it (``b``, ``span``, ``a``...) leaves nothing. A field without
markup is returned unchanged, so a clean catalog reads exactly as before. Parsing is the
standard library's lenient :class:`html.parser.HTMLParser`.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_MARKUP = re.compile(
    r"</?[a-zA-Z][^<>]*>"  # a tag
    r"|<!--"  # a comment
    r"|&(?:#[0-9]+|#[xX][0-9a-fA-F]+|[a-zA-Z][a-zA-Z0-9]*);"  # a character reference
)
"""A tag, a comment's start or a character reference: what makes a field markup."""

INLINE_TAGS = frozenset(
    {"a", "abbr", "b", "bdi", "bdo", "cite", "code", "data", "dfn", "em", "font", "i", "kbd",
     "mark", "q", "s", "samp", "small", "span", "strike", "strong", "sub", "sup", "time", "tt",
     "u", "var", "wbr"}
)  # fmt: skip
"""Tags that style words within a line: removed without a space ("<b>4</b>K" is "4K")."""

HIDDEN_TAGS = frozenset({"script", "style", "template", "noscript", "head", "title"})
"""Tags whose content is not text a shopper sees."""


def has_markup(text: str) -> bool:
    """Whether ``text`` carries a tag, comment or character reference."""
    return _MARKUP.search(text) is not None


def plain_text(text: str) -> str:
    """``text`` without its markup (see the module doc); unchanged when it has none."""
    if not has_markup(text):
        return text
    parser = _TextCollector()
    parser.feed(text)
    parser.close()
    return " ".join("".join(parser.parts).split())


class _TextCollector(HTMLParser):
    """Collects the visible text of an HTML fragment, a space for each block boundary."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in HIDDEN_TAGS:
            self._hidden += 1
        elif tag not in INLINE_TAGS:
            self.parts.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in INLINE_TAGS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in HIDDEN_TAGS:
            self._hidden = max(0, self._hidden - 1)
        elif tag not in INLINE_TAGS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)
