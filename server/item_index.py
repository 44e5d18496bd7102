"""Item search and listing from memory: the version's item_overview, held by each worker.

A version never changes, and its item summaries are small (about 200 bytes an item: 20,000 items
are a few MB, 200,000 a few tens), so each worker loads them once when it opens the version and
answers `GET /api/v1/items` without a query. The answers are the ones the SQL of
`server.bodies.list_items_query` gives, byte for byte:

- `q` matches a substring of the id or the name without regard to case, as DuckDB's ILIKE does:
  each character lowercased on its own (no final sigma, U+0130 to a plain i), see `fold`;
- `category` and `site` match exactly;
- `item_id` order is code-point order (DuckDB compares VARCHAR bytewise, UTF-8 keeps that order);
  `risk` order is highest max_stockout_risk first (a null risk counts as 0), `cover` lowest
  days_of_cover_now first (a null cover, no demand to cover, counts as endless: last), `units`
  highest forecast_next_30d first; ties in item_id order;
- a cursor names the sort value and item_id of the last row sent, and the next page starts after it;
- `total` counts every match of the filters, whatever the cursor.

tests/unit/test_item_index.py holds both to the same answers on generated items.
"""

from __future__ import annotations

import array
import bisect
import math
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from server.schemas import ItemSummary

OVERVIEW_COLUMNS = (
    "item_id, name, category, site, unit, max_stockout_risk, days_of_cover_now, forecast_next_30d"
)
SEPARATOR = "\x00"  # between an item's folded id and name in the search text: never in either
GRAM = 3  # the length of the pieces the search index files items under
SCAN_AFTER_HITS = 64
SORT_AT_MOST = 4096  # more matches than this are put in a value order by filtering the whole order
SEARCHES_KEPT = 1024  # the matches of this many recent searches are kept per worker and version  # a `q` with this many hits is cheaper to check item by item


def _fold_table() -> dict[int, str]:
    table: dict[int, str] = {}
    for point in range(sys.maxunicode + 1):
        if 0xD800 <= point <= 0xDFFF:
            continue
        lower = chr(point).lower()
        if len(lower) == 1 and lower != chr(point):
            table[point] = lower
    table[0x130] = "i"  # LATIN CAPITAL LETTER I WITH DOT ABOVE: Python makes it two characters
    return table


_FOLD = _fold_table()


def fold(text: str) -> str:
    """`text` lowercased one character at a time, as DuckDB's lower() and ILIKE do."""
    return text.lower() if text.isascii() else text.translate(_FOLD)


Row = tuple[Any, ...]  # item_id, name, category, site, unit, risk, days_of_cover_now, next_30d
SortKey = tuple[float, str]

# The orders of `GET /api/v1/items` (`sort`), each with the item's value it orders by.
SORT_VALUES = {
    "item_id": None,
    "risk": "max_stockout_risk",
    "cover": "days_of_cover_now",
    "units": "forecast_next_30d",
}
SORTS = tuple(SORT_VALUES)


def sort_key(sort: str, item_id: str, value: float | None) -> SortKey:
    """The key of a value sort: ascending order of it is the sort's order, ties by item_id."""
    if sort == "cover":
        return (math.inf if value is None else value, item_id)  # no cover figure: last
    return (-(value or 0.0), item_id)  # risk and units: highest first, null as 0


def sort_value(sort: str, item: ItemSummary) -> float | None:
    """The value `item` is ordered by in `sort` (None for item_id, which orders by the id)."""
    name = SORT_VALUES[sort]
    return None if name is None else getattr(item, name)


@dataclass(frozen=True)
class Page:
    """One page of matches, in sort order, and how many match in all."""

    items: list[ItemSummary]
    last: ItemSummary | None  # the last item sent, when more follow (the next cursor names it)
    total: int


class ItemIndex:
    """Every item of one version, sorted and searchable; built once per worker and version."""

    def __init__(self, rows: Sequence[Row], *, background: bool = False) -> None:
        self.items = [ItemSummary(*row) for row in sorted(rows, key=lambda row: row[0])]
        self._numbers = {item.item_id: number for number, item in enumerate(self.items)}
        self._ids = [item.item_id for item in self.items]
        self._sort_keys: dict[str, list[SortKey]] = {}
        self._folded = [
            fold(item.item_id) + SEPARATOR + fold(item.name) + SEPARATOR for item in self.items
        ]
        self._starts: list[int] = []
        at = 0
        for text in self._folded:
            self._starts.append(at)
            at += len(text)
        self._text = "".join(self._folded)
        self._orders: dict[tuple[str | None, str | None, str], tuple[list[int], list[Any]]] = {}
        self._searches: dict[
            tuple[str, str | None, str | None, str], tuple[list[int], list[Any]]
        ] = {}
        self._grams: dict[str, array.array[int]] | None = None
        self._grams_built = threading.Event()
        if background:
            threading.Thread(target=self.index_grams, name="item-grams", daemon=True).start()
        else:
            self.index_grams()

    def index_grams(self) -> None:
        """Index every item by the three-character pieces of its folded id and name.

        A worker builds it in a thread of its own after it opened the version (about half a
        second a 20,000 items), so it is ready fast; until then `q` scans the text, which gives
        the same answers, slower.
        """
        grams: dict[str, list[int]] = {}
        for number, text in enumerate(self._folded):
            for piece in {text[at : at + GRAM] for at in range(len(text) - GRAM + 1)}:
                if SEPARATOR not in piece:
                    grams.setdefault(piece, []).append(number)
        self._grams = {piece: array.array("i", sorted(numbers)) for piece, numbers in grams.items()}
        self._grams_built.set()

    def wait_for_grams(self, timeout: float | None = None) -> bool:
        """Whether the gram index is ready (waiting up to `timeout` seconds for it)."""
        return self._grams_built.wait(timeout)

    @classmethod
    def from_rows(cls, rows: Sequence[Row], *, background: bool = False) -> ItemIndex:
        """An index of item_overview rows (OVERVIEW_COLUMNS order); grams in a thread if asked."""
        return cls(rows, background=background)

    def __len__(self) -> int:
        return len(self.items)

    def item(self, item_id: str) -> ItemSummary | None:
        """The summary of `item_id`, if the version has that item."""
        number = self._numbers.get(item_id)
        return None if number is None else self.items[number]

    def page(
        self,
        q: str | None,
        category: str | None,
        site: str | None,
        sort: str,
        after: tuple[str, float | None] | None,
        limit: int,
    ) -> Page:
        """The `limit` matches after the cursor position `after` (item_id, value) in `sort` order."""
        if q:
            numbers, keys = self._matching(fold(q), category, site, sort)
        else:
            numbers, keys = self._ordered(category, site, sort)
        start = 0
        if after is not None:
            after_item, after_value = after
            cut: Any = after_item if sort == "item_id" else sort_key(sort, after_item, after_value)
            start = bisect.bisect_right(keys, cut)
        chosen = numbers[start : start + limit + 1]
        more = len(chosen) > limit
        page = [self.items[n] for n in chosen[:limit]]
        return Page(page, page[-1] if more and page else None, len(numbers))

    def _matching(
        self, needle: str, category: str | None, site: str | None, sort: str
    ) -> tuple[list[int], list[Any]]:
        """The items matching `q` and the filters in `sort` order, with their keys (kept a while).

        A broad `q` ("it-") matches most items: finding them takes milliseconds at 200,000, so
        the matches of recent searches are kept (the next pages ask for the same), and a value
        order comes from the whole index's, filtered, instead of a sort of the matches.
        """
        key = (needle, category, site, sort)
        known = self._searches.get(key)
        if known is not None:
            return known
        numbers = [n for n in self._search(needle) if self._keeps(n, category, site)]
        if sort != "item_id":
            if len(numbers) > SORT_AT_MOST:
                chosen = bytearray(len(self.items))
                for number in numbers:
                    chosen[number] = 1
                numbers = [n for n in self._ordered(None, None, sort)[0] if chosen[n]]
            else:
                numbers.sort(key=self._keys(sort).__getitem__)
        known = (numbers, self._keys_of(numbers, sort))
        if len(self._searches) >= SEARCHES_KEPT:
            self._searches.clear()
        self._searches[key] = known
        return known

    def _keeps(self, number: int, category: str | None, site: str | None) -> bool:
        item = self.items[number]
        return (category is None or item.category == category) and (
            site is None or item.site == site
        )

    def _keys(self, sort: str) -> list[SortKey]:
        """Every item's key in a value sort, by item number (made once per sort, then kept)."""
        keys = self._sort_keys.get(sort)
        if keys is None:
            keys = [sort_key(sort, item.item_id, sort_value(sort, item)) for item in self.items]
            self._sort_keys[sort] = keys
        return keys

    def _keys_of(self, numbers: list[int], sort: str) -> list[Any]:
        source: list[Any] = self._ids if sort == "item_id" else self._keys(sort)
        return [source[n] for n in numbers]

    def _ordered(
        self, category: str | None, site: str | None, sort: str
    ) -> tuple[list[int], list[Any]]:
        """Every item of the filters in `sort` order, with its sort keys (made once, then kept)."""
        key = (category, site, sort)
        known = self._orders.get(key)
        if known is None:
            numbers = [n for n in range(len(self.items)) if self._keeps(n, category, site)]
            if sort != "item_id":
                numbers.sort(key=self._keys(sort).__getitem__)
            known = (numbers, self._keys_of(numbers, sort))
            if len(self._orders) < 4096:  # filters are a few categories and sites; bound it anyway
                self._orders[key] = known
        return known

    def _search(self, needle: str) -> list[int]:
        """The numbers of the items whose folded id or name contains `needle`, in item_id order."""
        if SEPARATOR in needle:
            return []  # neither an id nor a name holds the separator, so nothing matches
        grams = self._grams
        if grams is not None and len(needle) >= GRAM:
            # Every item holding the needle holds each of its pieces: the rarest piece's items
            # are a superset of the matches, in item_id order; each is then checked whole.
            pieces = []
            for at in range(len(needle) - GRAM + 1):
                numbers = grams.get(needle[at : at + GRAM])
                if numbers is None:
                    return []  # a piece no item has
                pieces.append(numbers)
            folded = self._folded
            return [n for n in min(pieces, key=len) if needle in folded[n]]
        found: list[int] = []
        text, starts = self._text, self._starts
        at = text.find(needle)
        while at >= 0:
            number = bisect.bisect_right(starts, at) - 1
            found.append(number)
            if len(found) >= SCAN_AFTER_HITS:
                rest = range(number + 1, len(starts))
                folded = self._folded
                found += [n for n in rest if needle in folded[n]]
                break
            following = number + 1
            if following >= len(starts):
                break
            at = text.find(needle, starts[following])
        return found
