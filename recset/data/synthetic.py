"""Synthetic catalog + events with planted complementary structure and a known answer.

:func:`generate` builds a dataset in the canonical format (see :mod:`recset.data._format`)
together with ``truth``: the structure that was planted, so tests of recall sets, the
ranker and personalization can score against it. :func:`write_synthetic` writes both as a
dataset directory (``catalog.parquet``, ``events.parquet``, ``truth.json``).

Planted structure
-----------------
**Product types and categories.** A fixed vocabulary of 11 *families* (46 product types).
Each family has one *anchor* type (camera, phone, laptop, tv, game_console, printer,
tennis_racket, bicycle, running_shoes, coffee_maker, lawn_mower) and 2-4 *complement*
types (camera -> lens, sd_card, camera_bag, tripod...). Each family has two categories,
the anchor's (``"Electronics > Cameras > Digital Cameras"``) and its accessories'
(``"Electronics > Cameras > Camera Accessories"``); departments (Electronics, Office,
Sports, Home) hold several families. The type count is fixed by default and items per type
scale with ``n_items``; ``type_copies=c`` replicates the whole vocabulary ``c`` times
(copy ``k >= 1`` suffixes types with ``_k``, e.g. ``camera_3``, and category groups with
`` k``) for finer type structure in large catalogs. Items are split over types in
proportion to a weight (anchors 1, complements 1.4), each type getting at least 2 items.

**Type-transition graph (asymmetric).** ``truth["complementary_types"][anchor]`` lists the
anchor's complement types; complement types have an empty list (an SD card does not call
for a camera). Each complement type belongs to exactly one family.

**Products, models, compatibility.** Items are colour variants of *products*; a product
has a brand, a product line word, a price and, for anchors, a unique ``model`` name. Item
aspects are JSON: anchors ``{"model": "CAM-117", "color": "black"}``; accessories of
compatibility-sensitive types (lens, phone_case, screen_protector, charger,
laptop_sleeve, tv_mount, controller, video_game, ink_cartridge, mower_blade)
``{"compatible_model": "CAM-117", "color": "red"}`` (one anchor model per accessory
product, every anchor model covered when there are enough accessory products); other
types ``{"color": ...}``. ``product_id`` is set on most multi-variant products
(``product_id_share``) and null otherwise. Titles are ``brand line label [model | for
model] Colour`` (e.g. ``"Aurex Pro Digital Camera CAM-117 Black"``), so similar items have
similar text. Anchors are expensive, accessories cheap; ``unavailable_share`` of items has
``available=False``.

**Users.** Each user has a planted brand, colour, 1-3 interest families and 1-3
*favourite* items of consumable types without compatibility constraint (tennis balls,
coffee beans...). Item choices follow the user's preferences: with probability
``brand_affinity`` the choice is restricted to the user's brand, independently with
``color_affinity`` to the user's colour (when the type has such items), else any item of
the type. Within a type popularity is Zipf-like (``popularity_zipf``).

**Sessions** (each has a ``session_id``; purchases of a session share one ``order_id``):

- *purchase* (``purchase_session_share``): views of several substitutes of an anchor type
  (co-view of substitutes), one of which is bought (purchase after view) together with
  1-``max_complements`` items of distinct complement types of the anchor (co-purchase).
  A compatibility-sensitive complement is always compatible with the bought anchor's
  model; it is left out if no such item exists. Complements are sometimes viewed first
  (``complement_view_prob``); with small probabilities a favourite (``favorite_addon_prob``)
  or an unrelated non-compatibility item of another family (``noise_prob``) joins the order.
- *view-only* (``view_session_share``): views of substitutes of the anchor type or of one
  of its complement types.
- *repeat* (the rest): the user buys 1-2 of their favourites again.

Every purchased item has an ``add_to_cart`` before it with probability ``cart_prob``.
Timestamps span ``days`` days from ``start_time``; a user's sessions are at least an hour
apart and events are strictly increasing per user. Events are sorted by timestamp.

**Cold start.** ``cold_start_share`` of the items (never the most popular item of a type)
appear in no event; they are in the catalog like their type-mates.

**Event count.** Sessions are drawn with a margin and whole sessions are kept, in random
order, while the total stays within ``n_events``: the result has at most ``n_events``
events and at least ``n_events`` minus one session's events (< 40), unless ``n_events`` is
so small that every user's first session already exceeds it.

Truth schema (``truth.json``)
-----------------------------
``complementary_types``: {type: [complement types]} for every type;
``anchor_types``, ``consumable_types``: [type]; ``compatibility_types``: {accessory type:
anchor type}; ``categories``: {category_id: [types]}; ``category_paths``: {category_id:
path}; ``type_category``: {type: category_id}; ``brands``, ``colors``: [str];
``compatible_models``: {model: {"anchor_type": type, "anchor_items": [item_id],
"accessory_items": [item_id]}}; ``compatible_pairs``: [[anchor_item_id,
accessory_item_id]] listing every compatible pair, or ``null`` when there would be more
than ``max_truth_pairs`` of them (use ``compatible_models`` then); ``user_preferences``:
{user_id: {"brand", "color", "interests": [anchor types], "favorites": [item_id]}};
``cold_start_items``: [item_id]; ``substitute_groups``: {type: [item_id]} (the items of a
type are each other's substitutes); ``n_items``, ``n_users``, ``n_events``; ``config``:
the :class:`SyntheticConfig` as a dict.

Everything is drawn from one ``numpy.random.Generator`` seeded by ``seed``: the same config
gives identical frames and truth. The work is vectorised (loops run per type, never per
event); 100k items / 1M events take a few seconds.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from numpy.typing import NDArray

from recset.data._format import EVENT_TYPES, write_dataset
from recset.errors import ConfigError, DataError

__all__ = ["SyntheticConfig", "SyntheticData", "generate", "write_synthetic"]

_log = logging.getLogger(__name__)

IntArray = NDArray[np.int64]

# (department, group, anchor category, accessory category, anchor type, label, model code,
#  price, [(complement type, label, price, compatibility-sensitive, consumable)])
_FAMILIES: tuple[
    tuple[str, str, str, str, str, str, str, float, tuple[tuple[str, str, float, bool, bool], ...]],
    ...,
] = (  # noqa: E501
    (
        "Electronics",
        "Cameras",
        "Digital Cameras",
        "Camera Accessories",
        "camera",
        "Digital Camera",
        "CAM",
        650.0,
        (
            ("lens", "Lens", 220.0, True, False),
            ("sd_card", "SD Card", 18.0, False, False),
            ("camera_bag", "Camera Bag", 35.0, False, False),
            ("tripod", "Tripod", 45.0, False, False),
        ),
    ),
    (
        "Electronics",
        "Phones",
        "Smartphones",
        "Phone Accessories",
        "phone",
        "Smartphone",
        "PHN",
        700.0,
        (
            ("phone_case", "Phone Case", 19.0, True, False),
            ("screen_protector", "Screen Protector", 12.0, True, False),
            ("charger", "Charger", 25.0, True, False),
        ),
    ),
    (
        "Electronics",
        "Computers",
        "Laptops",
        "Computer Accessories",
        "laptop",
        "Laptop",
        "LTP",
        1100.0,
        (
            ("laptop_sleeve", "Laptop Sleeve", 29.0, True, False),
            ("mouse", "Wireless Mouse", 24.0, False, False),
            ("usb_hub", "USB Hub", 32.0, False, False),
        ),
    ),
    (
        "Electronics",
        "TV & Video",
        "Televisions",
        "TV Accessories",
        "tv",
        "Television",
        "TV",
        800.0,
        (
            ("tv_mount", "TV Wall Mount", 49.0, True, False),
            ("hdmi_cable", "HDMI Cable", 12.0, False, False),
            ("soundbar", "Soundbar", 180.0, False, False),
        ),
    ),
    (
        "Electronics",
        "Gaming",
        "Consoles",
        "Gaming Accessories",
        "game_console",
        "Game Console",
        "GCN",
        450.0,
        (
            ("controller", "Controller", 59.0, True, False),
            ("video_game", "Video Game", 55.0, True, False),
            ("gaming_headset", "Gaming Headset", 70.0, False, False),
        ),
    ),
    (
        "Office",
        "Printing",
        "Printers",
        "Printer Supplies",
        "printer",
        "Printer",
        "PRN",
        220.0,
        (
            ("ink_cartridge", "Ink Cartridge", 28.0, True, True),
            ("printer_paper", "Printer Paper", 9.0, False, True),
        ),
    ),
    (
        "Sports",
        "Tennis",
        "Rackets",
        "Tennis Accessories",
        "tennis_racket",
        "Tennis Racket",
        "TRK",
        150.0,
        (
            ("tennis_balls", "Tennis Balls", 8.0, False, True),
            ("overgrip", "Overgrip", 6.0, False, True),
            ("headband", "Headband", 10.0, False, False),
            ("racket_string", "Racket String", 14.0, False, True),
        ),
    ),
    (
        "Sports",
        "Cycling",
        "Bikes",
        "Cycling Accessories",
        "bicycle",
        "Bicycle",
        "BIK",
        600.0,
        (
            ("bike_helmet", "Bike Helmet", 55.0, False, False),
            ("bike_lock", "Bike Lock", 30.0, False, False),
            ("bike_light", "Bike Light", 22.0, False, False),
            ("inner_tube", "Inner Tube", 7.0, False, True),
        ),
    ),
    (
        "Sports",
        "Running",
        "Running Shoes",
        "Running Gear",
        "running_shoes",
        "Running Shoes",
        "RUN",
        120.0,
        (
            ("running_socks", "Running Socks", 12.0, False, True),
            ("water_bottle", "Water Bottle", 15.0, False, False),
            ("sports_watch", "Sports Watch", 160.0, False, False),
        ),
    ),
    (
        "Home",
        "Kitchen",
        "Coffee Machines",
        "Coffee Supplies",
        "coffee_maker",
        "Coffee Maker",
        "COF",
        250.0,
        (
            ("coffee_beans", "Coffee Beans", 14.0, False, True),
            ("filters", "Coffee Filters", 5.0, False, True),
            ("descaler", "Descaler", 9.0, False, True),
            ("milk_frother", "Milk Frother", 40.0, False, False),
        ),
    ),
    (
        "Home",
        "Garden",
        "Lawn Mowers",
        "Garden Tools",
        "lawn_mower",
        "Lawn Mower",
        "MOW",
        350.0,
        (
            ("mower_blade", "Mower Blade", 25.0, True, False),
            ("garden_gloves", "Garden Gloves", 11.0, False, True),
        ),
    ),
)

_BRANDS: tuple[str, ...] = (
    "Aurex",
    "Borealis",
    "Corvo",
    "Dunmore",
    "Elara",
    "Fennick",
    "Galvan",
    "Helio",
    "Istra",
    "Jorvik",
    "Kestrel",
    "Lumio",
)
_COLORS: tuple[str, ...] = (
    "black",
    "white",
    "silver",
    "red",
    "blue",
    "green",
    "yellow",
    "pink",
    "grey",
    "orange",
)
_LINES: tuple[str, ...] = (
    "Pro",
    "Lite",
    "Max",
    "Classic",
    "Sport",
    "Plus",
    "Mini",
    "Ultra",
    "Air",
    "Prime",
)

# Within-session event ordering: phase, then a sub-position inside the phase.
_PHASE_VIEW, _PHASE_COMPLEMENT_VIEW, _PHASE_CART, _PHASE_PURCHASE = 0, 1, 2, 3
_SUB_FAVORITE, _SUB_NOISE = 10, 11
_MAX_VIEWS = 12
_KIND_PURCHASE, _KIND_VIEW, _KIND_REPEAT = 0, 1, 2
_EV_VIEW = EVENT_TYPES.index("view")
_EV_CART = EVENT_TYPES.index("add_to_cart")
_EV_PURCHASE = EVENT_TYPES.index("purchase")
_SESSION_GAP = 3600  # seconds between the starts of a user's consecutive sessions (at least)
_N_BASE_TYPES = sum(1 + len(f[8]) for f in _FAMILIES)


@dataclass(frozen=True)
class SyntheticConfig:
    """Knobs of the synthetic generator; every field has a sensible default.

    Parameters
    ----------
    n_items : int
        Catalog size; at least 2 items per product type (92 per ``type_copies``).
    n_users : int or None
        Number of users; default ``max(50, n_items // 3)``.
    n_events : int or None
        Target number of events (met up to one session, see the module docs);
        default ``10 * n_items``.
    seed : int
        Seed of the single ``numpy.random.Generator`` everything is drawn from.
    cold_start_share : float in [0, 0.9]
        Share of items that appear in no event.
    unavailable_share : float in [0, 1]
        Share of items with ``available=False`` (they may still have past events).
    days : int
        Length of the event history in days.
    start_time : int
        Epoch seconds of the start of the history (default 2024-01-01 UTC).
    type_copies : int
        Replicate the product-type vocabulary this many times (suffix ``_k``).
    popularity_zipf : float
        Zipf exponent of item popularity within a type (0 = uniform).
    brand_affinity, color_affinity : float in [0, 1]
        Probability that a user's choice is restricted to their brand / colour.
    purchase_session_share, view_session_share : float in [0, 1]
        Shares of purchase and view-only sessions; the rest are repeat purchases.
    max_complements : int in [1, 4]
        Largest number of complements bought with an anchor.
    cart_prob, complement_view_prob, favorite_addon_prob, noise_prob : float in [0, 1]
        Probabilities of an add_to_cart before a purchase, of viewing a complement before
        buying it, of a favourite joining an anchor order, and of an unrelated item
        joining an anchor order.
    product_id_share : float in [0, 1]
        Share of multi-variant products whose items carry a ``product_id``.
    max_truth_pairs : int
        Largest ``truth["compatible_pairs"]`` list; beyond it the list is ``null``.
    """

    n_items: int = 10_000
    n_users: int | None = None
    n_events: int | None = None
    seed: int = 0
    cold_start_share: float = 0.05
    unavailable_share: float = 0.03
    days: int = 180
    start_time: int = 1_704_067_200
    type_copies: int = 1
    popularity_zipf: float = 1.0
    brand_affinity: float = 0.6
    color_affinity: float = 0.4
    purchase_session_share: float = 0.45
    view_session_share: float = 0.35
    max_complements: int = 3
    cart_prob: float = 0.5
    complement_view_prob: float = 0.3
    favorite_addon_prob: float = 0.1
    noise_prob: float = 0.05
    product_id_share: float = 0.8
    max_truth_pairs: int = 200_000

    def __post_init__(self) -> None:
        def bad(name: str, expected: str) -> ConfigError:
            return ConfigError(
                f"The {name!r} parameter of SyntheticConfig must be {expected}. "
                f"Got {getattr(self, name)!r} instead."
            )

        def is_int(v: object) -> bool:
            return isinstance(v, int | np.integer) and not isinstance(v, bool)

        def is_prob(v: object) -> bool:
            return isinstance(v, int | float) and not isinstance(v, bool) and 0.0 <= v <= 1.0

        if not is_int(self.type_copies) or self.type_copies < 1:
            raise bad("type_copies", "an int in [1, inf)")
        min_items = 2 * _N_BASE_TYPES * self.type_copies
        if not is_int(self.n_items) or self.n_items < min_items:
            raise bad("n_items", f"an int in [{min_items}, inf) (2 per product type)")
        if self.n_users is not None and (not is_int(self.n_users) or self.n_users < 1):
            raise bad("n_users", "None or an int in [1, inf)")
        if self.n_events is not None and (not is_int(self.n_events) or self.n_events < 1):
            raise bad("n_events", "None or an int in [1, inf)")
        if not is_int(self.seed) or self.seed < 0:
            raise bad("seed", "an int in [0, inf)")
        if not is_prob(self.cold_start_share) or self.cold_start_share > 0.9:
            raise bad("cold_start_share", "a float in [0, 0.9]")
        for name in (
            "unavailable_share",
            "brand_affinity",
            "color_affinity",
            "purchase_session_share",
            "view_session_share",
            "cart_prob",
            "complement_view_prob",
            "favorite_addon_prob",
            "noise_prob",
            "product_id_share",
        ):
            if not is_prob(getattr(self, name)):
                raise bad(name, "a float in [0, 1]")
        if self.purchase_session_share + self.view_session_share > 1.0:
            raise bad("view_session_share", "at most 1 - purchase_session_share")
        if not is_int(self.days) or self.days < 1:
            raise bad("days", "an int in [1, inf)")
        if not is_int(self.start_time) or self.start_time < 0:
            raise bad("start_time", "an int in [0, inf) (epoch seconds)")
        if not isinstance(self.popularity_zipf, int | float) or not 0 <= self.popularity_zipf <= 5:
            raise bad("popularity_zipf", "a float in [0, 5]")
        if not is_int(self.max_complements) or not 1 <= self.max_complements <= 4:
            raise bad("max_complements", "an int in [1, 4]")
        if not is_int(self.max_truth_pairs) or self.max_truth_pairs < 0:
            raise bad("max_truth_pairs", "an int in [0, inf)")

    @property
    def resolved_n_users(self) -> int:
        """``n_users``, or its default ``max(50, n_items // 3)``."""
        return self.n_users if self.n_users is not None else max(50, self.n_items // 3)

    @property
    def resolved_n_events(self) -> int:
        """``n_events``, or its default ``10 * n_items``."""
        return self.n_events if self.n_events is not None else 10 * self.n_items


@dataclass(frozen=True)
class SyntheticData:
    """A generated dataset: canonical catalog and events frames and the planted truth.

    Attributes
    ----------
    catalog : DataFrame
        One row per item, canonical catalog columns, sorted by ``item_id``.
    events : DataFrame
        Canonical event columns, sorted by ``timestamp``.
    truth : dict
        JSON-serialisable planted structure (schema in the module docstring).
    """

    catalog: pd.DataFrame
    events: pd.DataFrame
    truth: dict[str, Any]


# --------------------------------------------------------------------------- vocabulary


@dataclass(frozen=True)
class _Vocab:
    """Product types (index order: family by family, anchor first) and their attributes."""

    names: list[str]
    labels: list[str]
    codes: list[str]  # model-name code, anchors only ("" otherwise)
    price: NDArray[np.float64]
    family: IntArray  # family index of each type
    is_anchor: NDArray[np.bool_]
    is_compat: NDArray[np.bool_]
    is_consumable: NDArray[np.bool_]
    category: IntArray  # category index of each type
    category_paths: list[str]
    family_anchor: IntArray  # anchor type of each family
    family_complements: IntArray  # (n_families, 4), padded with -1
    family_n_complements: IntArray


def _build_vocab(copies: int) -> _Vocab:
    names: list[str] = []
    labels: list[str] = []
    codes: list[str] = []
    price: list[float] = []
    family: list[int] = []
    anchor: list[bool] = []
    compat: list[bool] = []
    consumable: list[bool] = []
    category: list[int] = []
    paths: list[str] = []
    fam_anchor: list[int] = []
    fam_comp = np.full((len(_FAMILIES) * copies, 4), -1, dtype=np.int64)
    fam_ncomp: list[int] = []
    for c in range(copies):
        suffix = f"_{c}" if c else ""
        group_suffix = f" {c}" if c else ""
        for dept, group, anchor_cat, acc_cat, a_type, a_label, code, a_price, comps in _FAMILIES:
            f = len(fam_anchor)
            fam_anchor.append(len(names))
            paths.append(f"{dept} > {group}{group_suffix} > {anchor_cat}")
            names.append(a_type + suffix)
            labels.append(a_label)
            codes.append(f"{code}{c}" if c else code)
            price.append(a_price)
            family.append(f)
            anchor.append(True)
            compat.append(False)
            consumable.append(False)
            category.append(len(paths) - 1)
            paths.append(f"{dept} > {group}{group_suffix} > {acc_cat}")
            for j, (t, label, p, is_compat, is_cons) in enumerate(comps):
                fam_comp[f, j] = len(names)
                names.append(t + suffix)
                labels.append(label)
                codes.append("")
                price.append(p)
                family.append(f)
                anchor.append(False)
                compat.append(is_compat)
                consumable.append(is_cons)
                category.append(len(paths) - 1)
            fam_ncomp.append(len(comps))
    return _Vocab(
        names=names,
        labels=labels,
        codes=codes,
        price=np.asarray(price),
        family=np.asarray(family, dtype=np.int64),
        is_anchor=np.asarray(anchor),
        is_compat=np.asarray(compat),
        is_consumable=np.asarray(consumable),
        category=np.asarray(category, dtype=np.int64),
        category_paths=paths,
        family_anchor=np.asarray(fam_anchor, dtype=np.int64),
        family_complements=fam_comp,
        family_n_complements=np.asarray(fam_ncomp, dtype=np.int64),
    )


# --------------------------------------------------------------------------- helpers


def _split_counts(total: int, weights: NDArray[np.float64], minimum: int) -> IntArray:
    """Split ``total`` into integer parts proportional to ``weights``, each >= ``minimum``."""
    rest = total - minimum * len(weights)
    share = weights / weights.sum() * rest
    counts = np.floor(share).astype(np.int64)
    left = rest - int(counts.sum())
    if left:
        counts[np.argsort(-(share - counts), kind="stable")[:left]] += 1
    return counts + minimum


def _rank_within(groups: IntArray) -> IntArray:
    """0-based position of each element among the elements of its group (input order)."""
    order = np.argsort(groups, kind="stable")
    g = groups[order]
    starts = np.r_[0, np.flatnonzero(g[1:] != g[:-1]) + 1]
    run = np.zeros(len(g), dtype=np.int64)
    if len(g):
        run[starts] = starts
        run = np.maximum.accumulate(run)
    rank = np.empty(len(g), dtype=np.int64)
    rank[order] = np.arange(len(g)) - run
    return rank


def _choose_distinct(
    rng: np.random.Generator, valid: NDArray[np.bool_], k: IntArray
) -> tuple[IntArray, IntArray]:
    """For each row pick ``k[row]`` distinct valid columns; returns (rows, columns)."""
    keys = rng.random(valid.shape)
    keys[~valid] = np.inf
    order = np.argsort(keys, axis=1)
    take = np.arange(valid.shape[1])[None, :] < k[:, None]
    rows = np.broadcast_to(np.arange(valid.shape[0])[:, None], valid.shape)
    return rows[take], order[take]


def _expand(counts: IntArray) -> tuple[IntArray, IntArray]:
    """(owner, j) for ``counts[owner]`` slots per owner, ``j`` in ``0..counts-1``."""
    owner = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    return owner, np.arange(len(owner)) - starts[owner]


class _Sampler:
    """Weighted sampling of items within segments given by an integer key, vectorised.

    Items are sorted by key; one global cumulative weight array and the segment bounds let
    a batch of draws (each with its own segment) be answered by two ``searchsorted``.
    """

    def __init__(self, keys: IntArray, items: IntArray, weights: NDArray[np.float64]) -> None:
        order = np.argsort(keys, kind="stable")
        sk = keys[order]
        self.items = items[order]
        self.cum = np.cumsum(weights[order])
        self.keys, start = np.unique(sk, return_index=True)
        self.start = start.astype(np.int64)
        self.end = np.r_[self.start[1:], len(sk)].astype(np.int64)
        self.base = np.where(self.start > 0, self.cum[np.maximum(self.start - 1, 0)], 0.0)
        self.total = self.cum[self.end - 1] - self.base

    def sample(self, keys: IntArray, u: NDArray[np.float64]) -> IntArray:
        """One item per key (``-1`` where the segment is empty), ``u`` uniform in [0, 1)."""
        out = np.full(len(keys), -1, dtype=np.int64)
        if not len(keys) or not len(self.keys):
            return out
        pos = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        found = self.keys[pos] == keys
        pos = pos[found]
        target = self.base[pos] + u[found] * self.total[pos]
        j = np.searchsorted(self.cum, target, side="right")
        j = np.clip(j, self.start[pos], self.end[pos] - 1)
        out[found] = self.items[j]
        return out


# --------------------------------------------------------------------------- catalog


@dataclass
class _Items:
    """Internal item table (index = internal item number, grouped by type)."""

    type: IntArray
    product: IntArray
    brand: IntArray
    color: IntArray
    weight: NDArray[np.float64]
    cold: NDArray[np.bool_]
    model: IntArray  # own anchor product (anchors), compatible anchor product (compat), or -1
    product_model: NDArray[np.object_]  # model name per product ("" if none)
    catalog: pd.DataFrame  # rows in internal order (not yet shuffled)


def _make_items(cfg: SyntheticConfig, voc: _Vocab, rng: np.random.Generator) -> _Items:
    n_types = len(voc.names)
    n_per_type = _split_counts(cfg.n_items, np.where(voc.is_anchor, 1.0, 1.4), 2)
    mean_variants = np.where(voc.is_anchor, 2.0, 1.5)
    n_prod_type = np.maximum(1, np.round(n_per_type / mean_variants)).astype(np.int64)
    prod_offset = np.r_[0, np.cumsum(n_prod_type)[:-1]]
    n_products = int(n_prod_type.sum())

    # Products: type, brand (Zipf-ish brand popularity), line, price, model / compatibility.
    pr_type = np.repeat(np.arange(n_types), n_prod_type)
    brand_w = 1.0 / np.arange(1, len(_BRANDS) + 1) ** 0.7
    pr_brand = rng.choice(len(_BRANDS), size=n_products, p=brand_w / brand_w.sum())
    pr_line = rng.integers(0, len(_LINES), size=n_products)
    pr_price = voc.price[pr_type] * rng.lognormal(0.0, 0.35, size=n_products)
    pr_price = np.maximum(np.round(pr_price) - 0.01, 1.99)
    pr_model = np.full(n_products, -1, dtype=np.int64)
    for t in range(n_types):
        lo, n = prod_offset[t], n_prod_type[t]
        if voc.is_anchor[t]:
            pr_model[lo : lo + n] = np.arange(lo, lo + n)
        elif voc.is_compat[t]:
            a = voc.family_anchor[voc.family[t]]
            a_lo, a_n = prod_offset[a], n_prod_type[a]
            # Cover every anchor model once (as far as products allow), then at random.
            first = rng.permutation(a_n)[: min(n, a_n)]
            rest = rng.integers(0, a_n, size=n - len(first))
            pr_model[lo : lo + n] = a_lo + np.r_[first, rest]
    names = np.full(n_products, "", dtype=object)
    for t in np.flatnonzero(voc.is_anchor):
        lo, n = prod_offset[t], n_prod_type[t]
        names[lo : lo + n] = [f"{voc.codes[t]}-{k}" for k in range(100, 100 + n)]

    # Items: each product gets one item, the remaining items go to random products of the
    # type; variants of a product get distinct colours (cycling after 10).
    it_type = np.repeat(np.arange(n_types), n_per_type)
    it_offset = np.r_[0, np.cumsum(n_per_type)[:-1]]
    within = np.arange(cfg.n_items) - it_offset[it_type]
    n_prod_it = n_prod_type[it_type]
    extra = (rng.random(cfg.n_items) * n_prod_it).astype(np.int64)
    it_product = prod_offset[it_type] + np.where(within < n_prod_it, within, extra)
    variant = _rank_within(it_product)
    color_offset = rng.integers(0, len(_COLORS), size=n_products)
    it_color = (color_offset[it_product] + variant) % len(_COLORS)
    n_variants = np.bincount(it_product, minlength=n_products)

    # Popularity: Zipf over a random rank within the type.
    rank = _rank_within_by(it_type, rng.random(cfg.n_items))
    weight = 1.0 / (rank + 1.0) ** cfg.popularity_zipf

    # Cold start: never the most popular item of its type.
    cold = np.zeros(cfg.n_items, dtype=bool)
    n_cold = int(round(cfg.cold_start_share * cfg.n_items))
    if n_cold:
        candidates = np.flatnonzero(rank > 0)
        cold[rng.choice(candidates, size=min(n_cold, len(candidates)), replace=False)] = True

    # Catalog columns (object-array arithmetic, no per-row Python code beyond products).
    brand_names = np.asarray(_BRANDS, dtype=object)
    color_names = np.asarray(_COLORS, dtype=object)
    color_title = np.asarray([c.capitalize() for c in _COLORS], dtype=object)
    labels = np.asarray(voc.labels, dtype=object)
    lines = np.asarray(_LINES, dtype=object)
    pr_title = brand_names[pr_brand] + " " + lines[pr_line] + " " + labels[pr_type]
    has_model = pr_model >= 0
    model_name = np.where(has_model, names[np.maximum(pr_model, 0)], "")
    anchor_pr = voc.is_anchor[pr_type]
    compat_pr = voc.is_compat[pr_type]
    pr_title = np.where(anchor_pr, pr_title + " " + model_name, pr_title)
    pr_title = np.where(compat_pr, pr_title + " for " + model_name, pr_title)
    pr_aspect = np.where(
        anchor_pr,
        '{"model": "' + model_name + '", ',
        np.where(compat_pr, '{"compatible_model": "' + model_name + '", ', "{"),
    )
    multi = n_variants >= 2
    with_pid = multi & (rng.random(n_products) < cfg.product_id_share)
    width = len(str(n_products))
    pid = np.full(n_products, None, dtype=object)
    pid[with_pid] = [f"p{k:0{width}d}" for k in np.flatnonzero(with_pid)]

    available = rng.random(cfg.n_items) >= cfg.unavailable_share
    type_names = np.asarray(voc.names, dtype=object)
    cat_ids = np.asarray(_category_ids(len(voc.category_paths)), dtype=object)
    cat_paths = np.asarray(voc.category_paths, dtype=object)
    it_cat = voc.category[it_type]
    catalog = pd.DataFrame(
        {
            "title": pr_title[it_product] + " " + color_title[it_color],
            "category_id": cat_ids[it_cat],
            "category_path": cat_paths[it_cat],
            "product_id": pid[it_product],
            "product_type": type_names[it_type],
            "brand": brand_names[pr_brand[it_product]],
            "price": pr_price[it_product],
            "available": available,
            "aspects": pr_aspect[it_product] + '"color": "' + color_names[it_color] + '"}',
        }
    )
    return _Items(
        type=it_type,
        product=it_product,
        brand=pr_brand[it_product],
        color=it_color,
        weight=weight,
        cold=cold,
        model=pr_model[it_product],
        product_model=names,
        catalog=catalog,
    )


def _rank_within_by(groups: IntArray, key: NDArray[np.float64]) -> IntArray:
    """Rank of ``key`` within each group (0 = smallest)."""
    order = np.lexsort((key, groups))
    g = groups[order]
    starts = np.r_[0, np.flatnonzero(g[1:] != g[:-1]) + 1]
    run = np.zeros(len(g), dtype=np.int64)
    run[starts] = starts
    run = np.maximum.accumulate(run)
    rank = np.empty(len(g), dtype=np.int64)
    rank[order] = np.arange(len(g)) - run
    return rank


def _category_ids(n: int) -> list[str]:
    return [f"c{k:03d}" for k in range(n)]


# --------------------------------------------------------------------------- behaviour


class _Chooser:
    """Preference-aware item choice: restrict to the user's brand and/or colour at random."""

    def __init__(self, it: _Items, voc: _Vocab, cfg: SyntheticConfig) -> None:
        warm = np.flatnonzero(~it.cold)
        t, b, c = it.type[warm], it.brand[warm], it.color[warm]
        w = it.weight[warm]
        nb, nc = len(_BRANDS), len(_COLORS)
        self.nb, self.nc = nb, nc
        self.by_type = _Sampler(t, warm, w)
        self.by_brand = _Sampler(t * nb + b, warm, w)
        self.by_color = _Sampler(t * nc + c, warm, w)
        self.by_brand_color = _Sampler((t * nb + b) * nc + c, warm, w)
        compat = voc.is_compat[t]
        self.n_models = int(it.model.max()) + 1 if len(it.model) else 1
        m_key = t[compat] * self.n_models + it.model[warm][compat]
        self.by_model = _Sampler(m_key, warm[compat], w[compat])
        self.by_model_color = _Sampler(m_key * nc + c[compat], warm[compat], w[compat])
        self.cfg = cfg

    def choose(
        self, rng: np.random.Generator, types: IntArray, brand: IntArray, color: IntArray
    ) -> IntArray:
        """An item of each type, following the user's brand/colour at the configured rates."""
        n = len(types)
        ub = rng.random(n) < self.cfg.brand_affinity
        uc = rng.random(n) < self.cfg.color_affinity
        u = rng.random(n)
        out = np.full(n, -1, dtype=np.int64)
        steps: list[tuple[_Sampler, NDArray[np.bool_], IntArray]] = [
            (self.by_brand_color, ub & uc, (types * self.nb + brand) * self.nc + color),
            (self.by_brand, ub, types * self.nb + brand),
            (self.by_color, uc, types * self.nc + color),
            (self.by_type, np.ones(n, dtype=bool), types),
        ]
        for sampler, cond, keys in steps:
            m = np.flatnonzero(cond & (out < 0))
            if len(m):
                out[m] = sampler.sample(keys[m], u[m])
        return out

    def choose_compatible(
        self, rng: np.random.Generator, types: IntArray, model: IntArray, color: IntArray
    ) -> IntArray:
        """An accessory of each type compatible with ``model`` (-1 if none exists)."""
        n = len(types)
        uc = rng.random(n) < self.cfg.color_affinity
        u = rng.random(n)
        key = types * self.n_models + model
        out = np.full(n, -1, dtype=np.int64)
        m = np.flatnonzero(uc)
        out[m] = self.by_model_color.sample(key[m] * self.nc + color[m], u[m])
        m = np.flatnonzero(out < 0)
        out[m] = self.by_model.sample(key[m], u[m])
        return out


@dataclass
class _Users:
    brand: IntArray
    color: IntArray
    interests: IntArray  # (n_users, 3) family indices, -1 padded
    n_interests: IntArray
    favorites: IntArray  # (n_users, 3) item numbers, -1 padded (column 0 always set)
    activity: NDArray[np.float64]


def _make_users(
    cfg: SyntheticConfig,
    voc: _Vocab,
    it: _Items,
    ch: _Chooser,
    rng: np.random.Generator,
    family_pop: NDArray[np.float64],
) -> _Users:
    n = cfg.resolved_n_users
    n_fam = len(voc.family_anchor)
    brand_w = 1.0 / np.arange(1, len(_BRANDS) + 1) ** 0.5
    brand = rng.choice(len(_BRANDS), size=n, p=brand_w / brand_w.sum())
    color = rng.integers(0, len(_COLORS), size=n)
    n_int = np.minimum(rng.integers(1, 4, size=n), n_fam)
    # Distinct interests weighted by family popularity (Gumbel top-k).
    g = np.log(family_pop)[None, :] - np.log(-np.log(rng.random((n, n_fam))))
    top = np.argsort(-g, axis=1)[:, :3]
    interests = np.where(np.arange(top.shape[1])[None, :] < n_int[:, None], top, -1)
    if interests.shape[1] < 3:
        pad = np.full((n, 3 - interests.shape[1]), -1, dtype=np.int64)
        interests = np.hstack([interests, pad])

    # Favourites: consumable, compatibility-free types; mostly of the primary interest.
    fav_types = np.flatnonzero(voc.is_consumable & ~voc.is_compat)
    fam_cons = np.full((n_fam, 4), -1, dtype=np.int64)
    for f in range(n_fam):
        ts = [t for t in voc.family_complements[f] if t >= 0 and t in set(fav_types.tolist())]
        fam_cons[f, : len(ts)] = ts
    fam_ncons = (fam_cons >= 0).sum(axis=1)
    n_fav = rng.integers(1, 4, size=n)
    fav = np.full((n, 3), -1, dtype=np.int64)
    primary = interests[:, 0]
    for j in range(3):
        global_t = fav_types[rng.integers(0, len(fav_types), size=n)]
        nc = fam_ncons[primary]
        pick = (rng.random(n) * np.maximum(nc, 1)).astype(np.int64)
        own_t = fam_cons[primary, np.minimum(pick, 3)]
        use_own = (nc > 0) & (rng.random(n) < 0.6)
        t = np.where(use_own, own_t, global_t)
        item = ch.choose(rng, t, brand, color)
        fav[:, j] = np.where(j < n_fav, item, -1)
    # Drop duplicates within a user (column 0 is always kept).
    fav[:, 1] = np.where(fav[:, 1] == fav[:, 0], -1, fav[:, 1])
    dup2 = (fav[:, 2] == fav[:, 0]) | (fav[:, 2] == fav[:, 1])
    fav[:, 2] = np.where(dup2, -1, fav[:, 2])
    activity = rng.lognormal(0.0, 0.8, size=n)
    return _Users(brand, color, interests, n_int, fav, activity)


def _expected_events_per_session(
    cfg: SyntheticConfig, voc: _Vocab, fam_p: NDArray[np.float64]
) -> float:
    """Expected events per session (for sizing the number of sessions)."""
    mean_views_p = 1 + 2.0
    k = np.minimum(voc.family_n_complements, np.arange(1, cfg.max_complements + 1)[:, None])
    mean_k = float((k.mean(axis=0) * fam_p).sum())
    bought = 1 + mean_k + cfg.favorite_addon_prob + cfg.noise_prob
    purchase = mean_views_p + bought * (1 + cfg.cart_prob) + mean_k * cfg.complement_view_prob
    view = 2 + 2.0
    repeat = 1.2 * (1 + cfg.cart_prob + 0.3)
    p_rep = 1.0 - cfg.purchase_session_share - cfg.view_session_share
    return cfg.purchase_session_share * purchase + cfg.view_session_share * view + p_rep * repeat


@dataclass
class _Block:
    """Events of one kind, all as arrays: session, item, event code, phase, sub-position."""

    session: IntArray
    item: IntArray
    event: int
    phase: int
    sub: IntArray


def _make_events(
    cfg: SyntheticConfig,
    voc: _Vocab,
    it: _Items,
    ch: _Chooser,
    us: _Users,
    rng: np.random.Generator,
    family_pop: NDArray[np.float64],
) -> tuple[dict[str, NDArray[Any]], IntArray]:
    """Event columns sorted by time (internal numbers) and each session's rank in time."""
    n_users = len(us.brand)
    n_fam = len(voc.family_anchor)
    target = cfg.resolved_n_events
    fam_p = family_pop / family_pop.sum()
    per_session = _expected_events_per_session(cfg, voc, fam_p)
    n_sessions = max(n_users, int(np.ceil(1.15 * target / per_session)) + 10)

    # Sessions 0..n_users-1 give every user one session; the rest follow user activity.
    act = us.activity / us.activity.sum()
    s_user = np.r_[np.arange(n_users), rng.choice(n_users, size=n_sessions - n_users, p=act)]
    s_user = s_user.astype(np.int64)
    r = rng.random(n_sessions)
    kind = np.where(
        r < cfg.purchase_session_share,
        _KIND_PURCHASE,
        np.where(r < cfg.purchase_session_share + cfg.view_session_share, _KIND_VIEW, _KIND_REPEAT),
    )
    pick = (rng.random(n_sessions) * us.n_interests[s_user]).astype(np.int64)
    fam = us.interests[s_user, pick]
    explore = rng.random(n_sessions) < 0.2
    fam = np.where(explore, rng.choice(n_fam, size=n_sessions, p=fam_p), fam)
    anchor_t = voc.family_anchor[fam]
    ub, uc = us.brand[s_user], us.color[s_user]
    blocks: list[_Block] = []

    # --- purchase sessions: views of substitutes, the anchor, complements, extras.
    ps = np.flatnonzero(kind == _KIND_PURCHASE)
    chosen = ch.choose(rng, anchor_t[ps], ub[ps], uc[ps])
    n_views = 1 + np.minimum(rng.poisson(2.0, size=len(ps)), _MAX_VIEWS - 1)
    pos = (rng.random(len(ps)) * n_views).astype(np.int64)
    o, j = _expand(n_views - 1)
    others = ch.choose(rng, anchor_t[ps][o], ub[ps][o], uc[ps][o])
    blocks.append(_Block(ps[o], others, _EV_VIEW, _PHASE_VIEW, j + (j >= pos[o])))
    blocks.append(_Block(ps, chosen, _EV_VIEW, _PHASE_VIEW, pos))
    bought: list[tuple[IntArray, IntArray, IntArray]] = [(ps, chosen, np.zeros(len(ps), np.int64))]

    nc = voc.family_n_complements[fam[ps]]
    k = np.minimum(nc, rng.integers(1, cfg.max_complements + 1, size=len(ps)))
    comp_slots = voc.family_complements[fam[ps]]
    rows, cols = _choose_distinct(rng, comp_slots >= 0, k)
    ctype = comp_slots[rows, cols]
    csess = ps[rows]
    citem = np.full(len(rows), -1, dtype=np.int64)
    is_c = voc.is_compat[ctype]
    m = np.flatnonzero(is_c)
    citem[m] = ch.choose_compatible(rng, ctype[m], it.model[chosen[rows[m]]], uc[csess[m]])
    m = np.flatnonzero(~is_c)
    citem[m] = ch.choose(rng, ctype[m], ub[csess[m]], uc[csess[m]])
    ok = citem >= 0
    csess, citem = csess[ok], citem[ok]
    csub = 1 + _rank_within(csess)
    bought.append((csess, citem, csub))
    seen = rng.random(len(csess)) < cfg.complement_view_prob
    blocks.append(_Block(csess[seen], citem[seen], _EV_VIEW, _PHASE_COMPLEMENT_VIEW, csub[seen]))

    # A favourite joins the order now and then; so does an unrelated item of another family
    # (never of a compatibility-sensitive type, so orders stay compatible).
    add = ps[rng.random(len(ps)) < cfg.favorite_addon_prob]
    f_valid = us.favorites[s_user[add]] >= 0
    fr, fc = _choose_distinct(rng, f_valid, np.ones(len(add), dtype=np.int64))
    fav_item = us.favorites[s_user[add][fr], fc]
    bought.append((add[fr], fav_item, np.full(len(fr), _SUB_FAVORITE, np.int64)))
    noisy = ps[rng.random(len(ps)) < cfg.noise_prob]
    noise_types = np.flatnonzero(~voc.is_anchor & ~voc.is_compat)
    nt = noise_types[rng.integers(0, len(noise_types), size=len(noisy))]
    keep = voc.family[nt] != fam[noisy]
    noisy, nt = noisy[keep], nt[keep]
    noise_item = ch.choose(rng, nt, ub[noisy], uc[noisy])
    bought.append((noisy, noise_item, np.full(len(noisy), _SUB_NOISE, np.int64)))

    # --- view-only sessions: substitutes of the anchor or of one of its complement types.
    vs = np.flatnonzero(kind == _KIND_VIEW)
    ncv = voc.family_n_complements[fam[vs]]
    slot = (rng.random(len(vs)) * ncv).astype(np.int64)
    comp_t = voc.family_complements[fam[vs], slot]
    browse_t = np.where(rng.random(len(vs)) < 0.7, anchor_t[vs], comp_t)
    nv = 2 + np.minimum(rng.poisson(2.0, size=len(vs)), _MAX_VIEWS - 2)
    o, j = _expand(nv)
    items = ch.choose(rng, browse_t[o], ub[vs][o], uc[vs][o])
    blocks.append(_Block(vs[o], items, _EV_VIEW, _PHASE_VIEW, j))

    # --- repeat sessions: 1-2 favourites bought again, sometimes viewed first.
    rs = np.flatnonzero(kind == _KIND_REPEAT)
    f_valid = us.favorites[s_user[rs]] >= 0
    n_buy = np.minimum(f_valid.sum(axis=1), 1 + (rng.random(len(rs)) < 0.3))
    rr, rc = _choose_distinct(rng, f_valid, n_buy)
    r_sess, r_item = rs[rr], us.favorites[s_user[rs][rr], rc]
    r_sub = _rank_within(r_sess)
    bought.append((r_sess, r_item, r_sub))
    seen = rng.random(len(r_sess)) < 0.3
    blocks.append(_Block(r_sess[seen], r_item[seen], _EV_VIEW, _PHASE_VIEW, r_sub[seen]))

    # Purchases, and add_to_cart before some of them.
    for sess, item, sub in bought:
        blocks.append(_Block(sess, item, _EV_PURCHASE, _PHASE_PURCHASE, sub))
        carted = rng.random(len(sess)) < cfg.cart_prob
        blocks.append(_Block(sess[carted], item[carted], _EV_CART, _PHASE_CART, sub[carted]))

    sess = np.concatenate([b.session for b in blocks])
    item = np.concatenate([b.item for b in blocks])
    event = np.concatenate([np.full(len(b.session), b.event, np.int8) for b in blocks])
    order_key = np.concatenate([b.phase * 64 + b.sub for b in blocks]) + sess * 256
    del blocks, bought
    order = np.argsort(order_key, kind="stable")
    sess, item, event = sess[order], item[order], event[order]
    del order_key, order

    # Keep whole sessions (first-sessions of users first) while the total fits n_events.
    counts = np.bincount(sess, minlength=n_sessions)
    n_keep = max(1, int(np.searchsorted(np.cumsum(counts), target, side="right")))
    if n_keep == n_sessions:
        _log.warning("synthetic: produced %d events for a target of %d", int(counts.sum()), target)
    kept = sess < n_keep
    sess, item, event = sess[kept], item[kept], event[kept]
    s_user, kind = s_user[:n_keep], kind[:n_keep]

    # Timestamps: a user's session starts are sorted, at least _SESSION_GAP apart; events of a
    # session follow each other by 10-60 s (scaled down for hyperactive users).
    span = cfg.days * 86_400
    n_per_user = np.bincount(s_user, minlength=n_users)
    gap = np.minimum(_SESSION_GAP, span // (n_per_user + 1)).astype(np.int64)
    free = np.maximum(span - gap * n_per_user, 1)
    x = (rng.random(n_keep) * free[s_user]).astype(np.int64)
    s_rank = _rank_within_by(s_user, x.astype(np.float64) + rng.random(n_keep) * 0.5)
    start = cfg.start_time + x + s_rank * gap[s_user]
    # A session has fewer than 32 events, so it ends before the user's next session starts.
    step = np.maximum(rng.uniform(0.15, 1.0, size=n_keep) * gap[s_user] / 32, 1.0)
    first = np.searchsorted(sess, np.arange(n_keep))
    ev_rank = np.arange(len(sess)) - first[sess]
    ts = start[sess] + (ev_rank * step[sess]).astype(np.int64)

    # Sessions (and their orders) are numbered in time order for the external ids.
    s_num = np.empty(n_keep, dtype=np.int64)
    s_num[np.argsort(start, kind="stable")] = np.arange(n_keep)
    by_time = np.argsort(ts, kind="stable")
    user = s_user[sess]
    cols = {"user": user, "item": item, "event": event, "timestamp": ts, "session": sess}
    return {k: v[by_time] for k, v in cols.items()}, s_num


# --------------------------------------------------------------------------- public API


def _id_strings(prefix: str, n: int) -> NDArray[np.object_]:
    """``prefix`` + zero-padded ``0..n-1`` (object array of str)."""
    width = len(str(max(n - 1, 0)))
    return np.char.add(prefix, np.char.zfill(np.arange(n).astype(str), width)).astype(object)


def _take_str(labels: NDArray[np.object_], codes: IntArray) -> pd.Series:
    """String column ``labels[codes]`` (null where ``codes < 0``), built in Arrow.

    Much faster than indexing an object array and letting pandas convert 10M strings.
    """
    dictionary = pa.array(labels, type=pa.string())
    taken = dictionary.take(pa.array(codes, mask=codes < 0))
    return taken.to_pandas()


def generate(config: SyntheticConfig) -> SyntheticData:
    """Generate a synthetic dataset with planted complementary structure.

    Parameters
    ----------
    config : SyntheticConfig
        Sizes, seed and behaviour knobs.

    Returns
    -------
    SyntheticData
        ``catalog`` (``n_items`` rows), ``events`` (about ``n_events`` rows, see the module
        docs) in the canonical columns, and ``truth`` (JSON-serialisable).

    Examples
    --------
    >>> data = generate(SyntheticConfig(n_items=500, n_events=3000, seed=1))
    >>> len(data.catalog), 2900 <= len(data.events) <= 3000
    (500, True)
    >>> data.truth["complementary_types"]["sd_card"]
    []
    """
    t0 = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    voc = _build_vocab(config.type_copies)
    it = _make_items(config, voc, rng)
    family_pop = rng.dirichlet(np.full(len(voc.family_anchor), 2.0))
    ch = _Chooser(it, voc, config)
    us = _make_users(config, voc, it, ch, rng, family_pop)
    frame, s_num = _make_events(config, voc, it, ch, us, rng, family_pop)
    t1 = time.perf_counter()

    # External ids: items are numbered in a random order so ids do not reveal the type.
    n = config.n_items
    item_num = rng.permutation(n)
    item_ids = _id_strings("i", n)
    ext = item_ids[item_num]  # external id of each internal item
    user_ids = _id_strings("u", len(us.brand))
    sess_ids = _id_strings("s", len(s_num))[s_num]  # numbered in time order
    order_ids = _id_strings("o", len(s_num))[s_num]

    catalog = it.catalog.copy()
    catalog.insert(0, "item_id", ext)
    catalog = catalog.iloc[np.argsort(item_num)].reset_index(drop=True)
    is_purchase = frame["event"] == _EV_PURCHASE
    session = frame["session"]
    event_names = np.asarray(EVENT_TYPES, dtype=object)
    events = pd.DataFrame(
        {
            "user_id": _take_str(user_ids, frame["user"]),
            "item_id": _take_str(ext, frame["item"]),
            "event": _take_str(event_names, frame["event"].astype(np.int64)),
            "timestamp": frame["timestamp"].astype(np.int64),
            "session_id": _take_str(sess_ids, session),
            "order_id": _take_str(order_ids, np.where(is_purchase, session, -1)),
        }
    )
    truth = _truth(config, voc, it, us, ext, user_ids, len(events))
    _log.info(
        "synthetic: %d items, %d users, %d events (seed %d) in %.1f s (+%.1f s ids, truth)",
        n,
        len(user_ids),
        len(events),
        config.seed,
        t1 - t0,
        time.perf_counter() - t1,
    )
    return SyntheticData(catalog=catalog, events=events, truth=truth)


def _group_lists(keys: IntArray, values: NDArray[np.object_], n: int) -> list[list[str]]:
    """``values`` grouped by integer ``keys`` in ``0..n-1`` (lists of str, key order)."""
    order = np.argsort(keys, kind="stable")
    bounds = np.searchsorted(keys[order], np.arange(n + 1))
    vals = values[order].tolist()
    return [vals[bounds[k] : bounds[k + 1]] for k in range(n)]


def _truth(
    cfg: SyntheticConfig,
    voc: _Vocab,
    it: _Items,
    us: _Users,
    ext: NDArray[np.object_],
    user_ids: NDArray[np.object_],
    n_events: int,
) -> dict[str, Any]:
    names = voc.names
    n_types = len(names)
    cat_ids = _category_ids(len(voc.category_paths))
    comp: dict[str, list[str]] = {t: [] for t in names}
    for f, a in enumerate(voc.family_anchor):
        comp[names[a]] = [names[t] for t in voc.family_complements[f] if t >= 0]
    categories: dict[str, list[str]] = {c: [] for c in cat_ids}
    for t in range(n_types):
        categories[cat_ids[voc.category[t]]].append(names[t])

    # Compatibility by model: anchor items of the model and accessories compatible with it.
    n_models = len(it.product_model)
    is_anchor_item = voc.is_anchor[it.type]
    is_compat_item = voc.is_compat[it.type]
    a_idx = np.flatnonzero(is_anchor_item)
    c_idx = np.flatnonzero(is_compat_item)
    anchors_of = _group_lists(it.model[a_idx], ext[a_idx], n_models)
    acc_of = _group_lists(it.model[c_idx], ext[c_idx], n_models)
    model_type = np.full(n_models, -1, dtype=np.int64)
    model_type[it.model[a_idx]] = it.type[a_idx]
    compatible_models: dict[str, Any] = {}
    n_pairs = 0
    for m in np.flatnonzero(model_type >= 0):
        compatible_models[str(it.product_model[m])] = {
            "anchor_type": names[model_type[m]],
            "anchor_items": anchors_of[m],
            "accessory_items": acc_of[m],
        }
        n_pairs += len(anchors_of[m]) * len(acc_of[m])
    pairs: list[list[str]] | None = None
    if n_pairs <= cfg.max_truth_pairs:
        pairs = [
            [a, c]
            for m in np.flatnonzero(model_type >= 0)
            for a in anchors_of[m]
            for c in acc_of[m]
        ]

    fam_names = np.asarray([names[a] for a in voc.family_anchor], dtype=object)
    fav_ext = np.where(us.favorites >= 0, ext[np.maximum(us.favorites, 0)], None)
    interests = np.where(us.interests >= 0, fam_names[np.maximum(us.interests, 0)], None)
    brands = np.asarray(_BRANDS, dtype=object)[us.brand]
    colors = np.asarray(_COLORS, dtype=object)[us.color]
    prefs = {
        u: {
            "brand": b,
            "color": c,
            "interests": [x for x in ints if x is not None],
            "favorites": [x for x in favs if x is not None],
        }
        for u, b, c, ints, favs in zip(
            user_ids.tolist(),
            brands.tolist(),
            colors.tolist(),
            interests.tolist(),
            fav_ext.tolist(),
            strict=True,
        )
    }
    subs = _group_lists(it.type, ext, n_types)
    return {
        "complementary_types": comp,
        "anchor_types": [names[a] for a in voc.family_anchor],
        "consumable_types": [names[t] for t in np.flatnonzero(voc.is_consumable)],
        "compatibility_types": {
            names[t]: names[voc.family_anchor[voc.family[t]]] for t in np.flatnonzero(voc.is_compat)
        },
        "categories": categories,
        "category_paths": dict(zip(cat_ids, voc.category_paths, strict=True)),
        "type_category": {names[t]: cat_ids[voc.category[t]] for t in range(n_types)},
        "brands": list(_BRANDS),
        "colors": list(_COLORS),
        "compatible_models": compatible_models,
        "compatible_pairs": pairs,
        "user_preferences": prefs,
        "cold_start_items": sorted(ext[it.cold].tolist()),
        "substitute_groups": {names[t]: sorted(subs[t]) for t in range(n_types)},
        "n_items": cfg.n_items,
        "n_users": len(user_ids),
        "n_events": n_events,
        "config": dataclasses.asdict(cfg),
    }


_DATASET_FILES = ("catalog.parquet", "events.parquet", "catalog.csv", "events.csv", "truth.json")


def write_synthetic(
    config: SyntheticConfig, out_dir: str | os.PathLike[str], *, force: bool = False
) -> Path:
    """Generate a dataset and write it as a dataset directory with ``truth.json``.

    Parameters
    ----------
    config : SyntheticConfig
        What to generate.
    out_dir : path
        Target directory; created if missing.
    force : bool
        Replace an existing dataset in ``out_dir``. Without it, a directory that already
        holds a dataset file (catalog/events/truth) raises :class:`DataError`.

    Returns
    -------
    Path
        ``out_dir``, holding ``catalog.parquet``, ``events.parquet`` and ``truth.json``.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: the output path exists and is not a directory")
    existing = [name for name in _DATASET_FILES if (out / name).exists()]
    if existing and not force:
        raise DataError(
            f"{out}: already holds a dataset ({', '.join(existing)}); pass force=True "
            "(--force) to overwrite it"
        )
    data = generate(config)
    t0 = time.perf_counter()
    text = json.dumps(data.truth, separators=(",", ":"))
    write_dataset(data.catalog, data.events, out, extra_files={"truth.json": text})
    for stale in ("catalog.csv", "events.csv"):
        (out / stale).unlink(missing_ok=True)
    _log.info("synthetic: wrote %s in %.1f s", out, time.perf_counter() - t0)
    return out
