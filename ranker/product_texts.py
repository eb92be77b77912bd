"""The text the models see for each product, rendered once while the product is unchanged.

Rendering a product through its :class:`~indexer.catalog.TextTemplate` (a format and a
whitespace regex per line) costs more than the rest of a search's per-product work, and a
shop's searches keep retrieving the same products. :class:`ProductTexts` keeps the rendered
text per product id (LRU) beside the product it was rendered from, and renders again when
the product that comes back differs (an upsert changed it).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

from indexer.catalog import Product, TextTemplate

DEFAULT_SIZE = 20_000
"""Products whose texts are kept: a few MiB for the sample catalogs' texts."""


class ProductTexts:
    """``template``'s text of products, the last ``max_size`` kept (0: none kept)."""

    def __init__(self, template: TextTemplate, max_size: int = DEFAULT_SIZE) -> None:
        if max_size < 0:
            raise ValueError(f"max_size must be >= 0, got {max_size}")
        self.template = template
        self.max_size = max_size
        self._items: OrderedDict[str, tuple[Product, str]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def texts(self, products: Sequence[Product]) -> list[str]:
        """Each product's text, in order: kept when that product (equal in every field) was
        rendered before, else rendered now and kept."""
        if self.max_size == 0:
            return [self.template.render(product) for product in products]
        texts: list[str | None] = []
        with self._lock:
            for product in products:
                kept = self._items.get(product.id)
                if kept is not None and (kept[0] is product or kept[0] == product):
                    self._items.move_to_end(product.id)
                    texts.append(kept[1])
                else:
                    texts.append(None)
        rendered = {
            i: self.template.render(product)
            for i, (product, text) in enumerate(zip(products, texts, strict=True))
            if text is None
        }
        if rendered:
            with self._lock:
                for i, text in rendered.items():
                    self._items[products[i].id] = (products[i], text)
                    self._items.move_to_end(products[i].id)
                while len(self._items) > self.max_size:
                    self._items.popitem(last=False)
        return [text if text is not None else rendered[i] for i, text in enumerate(texts)]
