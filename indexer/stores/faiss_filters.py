"""The FAISS store's filter metadata: per slot, the casefolded brand (as a code into a
vocabulary), the price (NaN for none) and the casefolded categories (a flat code array plus
the owning slot of each code). :meth:`FilterColumns.mask` turns a :class:`SearchFilter` into a
boolean mask over slots."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from indexer.catalog import Product
from indexer.stores.base import SearchFilter

BoolArray = npt.NDArray[np.bool_]
IdArray = npt.NDArray[np.int64]


class GrowableArray:
    """A 1-D numpy array with amortized appends."""

    def __init__(self, dtype: npt.DTypeLike, initial: npt.ArrayLike | None = None) -> None:
        start = np.asarray(initial if initial is not None else [], dtype=dtype)
        self._data = np.empty(max(16, start.size), dtype=dtype)
        self._data[: start.size] = start
        self._size = int(start.size)

    def __len__(self) -> int:
        return self._size

    @property
    def values(self) -> npt.NDArray[Any]:
        """The used part (a writable view; invalid after the next :meth:`extend`)."""
        return self._data[: self._size]

    def extend(self, values: npt.ArrayLike) -> None:
        """Append ``values``."""
        extra = np.asarray(values, dtype=self._data.dtype).ravel()
        needed = self._size + extra.size
        if needed > self._data.size:
            grown = np.empty(max(needed, 2 * self._data.size), dtype=self._data.dtype)
            grown[: self._size] = self._data[: self._size]
            self._data = grown
        self._data[self._size : needed] = extra
        self._size = needed


class Vocabulary:
    """Casefolded strings <-> dense int codes."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        self.names: list[str] = list(names)
        self._codes = {name: code for code, name in enumerate(self.names)}

    def code(self, name: str) -> int:
        """The code of ``name``, added if new."""
        code = self._codes.get(name)
        if code is None:
            code = len(self.names)
            self._codes[name] = code
            self.names.append(name)
        return code

    def known(self, names: Iterable[str]) -> list[int]:
        """Codes of the names already present."""
        return [self._codes[name] for name in names if name in self._codes]


class FilterColumns:
    """Filter metadata per slot: brand code, price (NaN for none) and category codes."""

    def __init__(
        self,
        *,
        brands: Vocabulary | None = None,
        categories: Vocabulary | None = None,
        arrays: dict[str, npt.NDArray[Any]] | None = None,
    ) -> None:
        arrays = arrays or {}
        self.brands = brands or Vocabulary()
        self.categories = categories or Vocabulary()
        self.brand_codes = GrowableArray(np.int32, arrays.get("brand_codes"))
        self.prices = GrowableArray(np.float64, arrays.get("prices"))
        self.category_codes = GrowableArray(np.int32, arrays.get("category_codes"))
        self.category_owners = GrowableArray(np.int64, arrays.get("category_owners"))

    def append(self, first_slot: int, products: Sequence[Product]) -> None:
        """Add the metadata of ``products``, which take slots from ``first_slot`` on."""
        self.brand_codes.extend([self.brands.code(p.brand.casefold()) for p in products])
        self.prices.extend([math.nan if p.price is None else p.price for p in products])
        codes: list[int] = []
        owners: list[int] = []
        for offset, product in enumerate(products):
            for name in sorted({c.casefold() for c in product.category}):
                codes.append(self.categories.code(name))
                owners.append(first_slot + offset)
        self.category_codes.extend(codes)
        self.category_owners.extend(owners)

    def mask(self, search_filter: SearchFilter) -> BoolArray:
        """Slots whose metadata passes ``search_filter`` (dead slots included)."""
        slots = len(self.brand_codes)
        mask = np.ones(slots, dtype=np.bool_)
        if search_filter.brands:
            wanted = self.brands.known({b.casefold() for b in search_filter.brands})
            mask &= np.isin(self.brand_codes.values, wanted)
        if search_filter.categories:
            wanted = self.categories.known({c.casefold() for c in search_filter.categories})
            hit = np.isin(self.category_codes.values, wanted)
            in_category = np.zeros(slots, dtype=np.bool_)
            in_category[self.category_owners.values[hit]] = True
            mask &= in_category
        if search_filter.price_min is not None or search_filter.price_max is not None:
            prices = self.prices.values
            priced = ~np.isnan(prices)
            if search_filter.price_min is not None:
                priced &= prices >= search_filter.price_min
            if search_filter.price_max is not None:
                priced &= prices <= search_filter.price_max
            mask &= priced
        return mask

    def keep(self, live: BoolArray) -> FilterColumns:
        """The columns of the ``live`` slots only, renumbered from 0."""
        new_slot = np.cumsum(live, dtype=np.int64) - 1
        owners = self.category_owners.values
        kept = live[owners]
        return FilterColumns(
            brands=self.brands,
            categories=self.categories,
            arrays={
                "brand_codes": self.brand_codes.values[live],
                "prices": self.prices.values[live],
                "category_codes": self.category_codes.values[kept],
                "category_owners": new_slot[owners[kept]],
            },
        )

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        """The numeric columns, for saving."""
        return {
            "brand_codes": self.brand_codes.values,
            "prices": self.prices.values,
            "category_codes": self.category_codes.values,
            "category_owners": self.category_owners.values,
        }
