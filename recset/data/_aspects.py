"""Decoding the catalog's ``aspects`` column (JSON object text or ``None`` per item), once.

Every reader of aspects (the catalog, text embeddings, the compatibility and popular recall
sets, the ranker's aspect-token feature) goes through :func:`decode_aspects`, so they agree
on what an item's aspects are. A validated dataset only holds JSON objects or ``None``; the
decoder is lenient on anything else (it returns ``{}``) so that a hand-built catalog cannot
make a reader fail half-way.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable

import numpy as np
from numpy.typing import NDArray

__all__ = ["MAX_ASPECT_TOKENS", "aspect_tokens", "aspect_values", "decode_aspects"]

_log = logging.getLogger(__name__)

MAX_ASPECT_TOKENS = 1024
"""Most frequent ``key=value`` aspect tokens kept by :func:`aspect_tokens` by default."""


def decode_aspects(raw: object) -> dict[str, object]:
    """The aspects of one item as a dict.

    Parameters
    ----------
    raw : str, bytes or None
        The item's ``aspects`` entry: JSON object text, or ``None`` when it has none.

    Returns
    -------
    dict
        A new dict (the caller may change it). ``None``, an empty string, text that is not
        valid JSON and JSON that is not an object (a list, a number...) all give ``{}``.

    Examples
    --------
    >>> decode_aspects('{"color": "red"}')
    {'color': 'red'}
    >>> decode_aspects(None), decode_aspects(""), decode_aspects("[1]"), decode_aspects("{")
    ({}, {}, {}, {})
    """
    if raw is None or not isinstance(raw, str | bytes | bytearray) or not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:  # json.JSONDecodeError and UnicodeDecodeError derive from it
        return {}
    return value if isinstance(value, dict) else {}


def aspect_values(aspects: Iterable[object], key: str) -> NDArray[np.object_]:
    """The value of aspect ``key`` for every item.

    Parameters
    ----------
    aspects : array-like of object (JSON text or None), shape (n_items,)
        The catalog's ``aspects`` column.
    key : str
        The aspect name, e.g. ``"color"``.

    Returns
    -------
    ndarray of object, shape (n_items,)
        The decoded JSON value (str, number, bool, list or dict) as stored, ``None`` where
        the item has no such aspect (or the aspect is JSON ``null``).
    """
    raws = list(aspects)
    out = np.empty(len(raws), dtype=object)
    for i, raw in enumerate(raws):
        out[i] = decode_aspects(raw).get(key)
    return out


def aspect_tokens(
    aspects: Iterable[object], max_tokens: int = MAX_ASPECT_TOKENS
) -> tuple[NDArray[np.int64], NDArray[np.int32]]:
    """Each item's ``key=value`` aspect tokens as CSR ``(indptr (n+1,), token ids)``.

    Only tokens carried by at least two items are kept (a value unique to one item says
    nothing about taste), and of those the ``max_tokens`` most frequent (ties by token text).
    Values that are not scalars (lists, objects) and nulls are skipped.

    Parameters
    ----------
    aspects : array-like of object (JSON text or None), shape (n_items,)
        The catalog's ``aspects`` column.
    max_tokens : int, default=MAX_ASPECT_TOKENS
        Size limit of the token vocabulary.

    Returns
    -------
    indptr : ndarray of int64, shape (n_items + 1,)
        Item ``i``'s tokens are ``tokens[indptr[i]:indptr[i + 1]]``.
    tokens : ndarray of int32, shape (indptr[-1],)
        Token ids in ``[0, max_tokens)``: 0 is the most frequent token. Within an item the
        ids follow the sorted token text.
    """
    parsed: list[list[str]] = []
    for raw in aspects:
        toks: list[str] = []
        for key, value in decode_aspects(raw).items():
            if value is None or isinstance(value, list | dict):
                continue
            toks.append(f"{key}={value}")
        parsed.append(sorted(set(toks)))
    counts = Counter(t for toks in parsed for t in toks)
    frequent = sorted((t for t, c in counts.items() if c >= 2), key=lambda t: (-counts[t], t))
    vocab = {t: j for j, t in enumerate(frequent[:max_tokens])}
    rows = [[vocab[t] for t in toks if t in vocab] for toks in parsed]
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(r) for r in rows], out=indptr[1:])
    flat = np.fromiter((j for r in rows for j in r), dtype=np.int32, count=int(indptr[-1]))
    return indptr, flat
