"""Catalog fields carrying HTML are read as plain text; fields without markup are not
touched."""

from __future__ import annotations

import pytest

from indexer.catalog import product_from_record
from indexer.markup import has_markup, plain_text


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>Dual USB ports</p><p>Fast charge</p>", "Dual USB ports Fast charge"),
        ("<ul><li>USB-C</li><li>Wi-Fi 6</li></ul>", "USB-C Wi-Fi 6"),
        ("Ultra <b>4</b>K <span class='x'>TV</span>", "Ultra 4K TV"),
        ("Line one<br/>Line two<br>three", "Line one Line two three"),
        ("Just&nbsp;one&nbsp;&amp; only &#8482; &#x2122;", "Just one & only \u2122 \u2122"),
        ("Safe<script>track()</script> <style>p {}</style>text", "Safe text"),
        ("<!-- hidden -->\n\t\t<td>\n\t\tCondition:</td>\n\t<td>New</td>", "Condition: New"),
        ("&lt;not a tag&gt;", "<not a tag>"),
    ],
)
def test_markup_becomes_plain_text(html: str, text: str) -> None:
    assert has_markup(html)
    assert plain_text(html) == text


@pytest.mark.parametrize(
    "text",
    [
        "size < 10 mm, weight > 2 kg",
        "AT&T prepaid phone",
        "Kindle\n  Paperwhite  ",
        "3 < 4 & 5 > 2",
        "",
    ],
)
def test_text_without_markup_is_unchanged(text: str) -> None:
    assert not has_markup(text)
    assert plain_text(text) == text


def test_a_catalog_record_reads_its_text_fields_as_plain_text() -> None:
    product = product_from_record(
        {
            "id": "<b>7</b>",
            "title": "Ultra <b>4</b>K TV",
            "description": "<p>A&nbsp;bright screen.</p><p>Three HDMI ports.</p>",
            "bullet_points": "<li>HDR10</li>\n<li>Dolby&trade; Vision</li>\n<br>",
            "brand": "Acme &amp; Sons",
            "category": "TV &gt; 4K",
            "html_notes": "<i>kept as given</i>",
        }
    )
    assert product.id == "<b>7</b>"  # an id is a key, never rewritten
    assert product.title == "Ultra 4K TV"
    assert product.description == "A bright screen. Three HDMI ports."
    assert product.bullet_points == ("HDR10", "Dolby\u2122 Vision")
    assert product.brand == "Acme & Sons"
    assert product.category == ("TV > 4K",)
    assert product.attributes == {"html_notes": "<i>kept as given</i>"}
