"""The one aspects decoder: lenient on bad input, unchanged results on valid catalogs."""

import json
from collections import Counter

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from recset.data import (
    MAX_ASPECT_TOKENS,
    Dataset,
    aspect_tokens,
    aspect_values,
    decode_aspects,
)
from recset.recall._text import _aspect_tokens, _words
from recset.recall.compatibility import _aspect_table
from recset.recall.popular import _factorize, aspect_codes

_KEYS = st.sampled_from(["color", "brand", "model", "compatible_model", "size", "organic"])
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(-2, 2, allow_nan=False, width=16),
    st.sampled_from(["red", "blue", "", "XL", "cam-117", "Red"]),
)
_VALUES = st.one_of(
    _SCALARS,
    st.lists(st.integers(0, 2), max_size=2),
    st.dictionaries(st.sampled_from(["a", "b"]), st.integers(0, 2), max_size=2),
)
_OBJECTS = st.dictionaries(_KEYS, _VALUES, max_size=4)
# what a validated catalog holds: JSON object text or None
_VALID = st.one_of(st.none(), _OBJECTS.map(json.dumps))
# anything a hand-built catalog might hold
_INVALID = st.one_of(
    st.just(""),
    st.text(max_size=12),
    st.sampled_from(["{", "[1, 2]", "3", '"red"', "null", "true", "{'a': 1}"]),
    st.integers(),
    st.floats(),
    st.binary(max_size=8),
)
_ANY = st.one_of(_VALID, _INVALID)


def _column(values: list[object]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


# -- the decoders each module had before: the new code must agree with them on valid data ---
def _legacy_catalog_aspect(raw: str | None) -> dict:
    return {} if raw is None else dict(json.loads(raw))


def _legacy_aspect_tokens(aspects: np.ndarray, max_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    parsed: list[list[str]] = []
    for raw in aspects:
        toks: list[str] = []
        if raw is not None:
            for key, value in json.loads(raw).items():
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


def _legacy_aspect_table(aspects: np.ndarray, keys: list[str]) -> dict[str, list[object]]:
    cols: dict[str, list[object]] = {k: [] for k in keys}
    for raw in aspects:
        d = {} if raw is None else json.loads(raw)
        for k in keys:
            v = d.get(k)
            cols[k].append(None if v is None or v == "" else str(v))
    return cols


# -- decode_aspects ----------------------------------------------------------------------------
@given(_OBJECTS)
def test_decode_round_trips_objects(obj: dict) -> None:
    assert decode_aspects(json.dumps(obj)) == obj
    assert decode_aspects(json.dumps(obj).encode()) == obj


@given(_ANY)
def test_decode_never_raises_and_always_gives_a_dict(raw: object) -> None:
    out = decode_aspects(raw)
    assert isinstance(out, dict)
    if not isinstance(raw, str | bytes) or not raw:
        assert out == {}


def test_decode_empty_for_missing_or_not_an_object() -> None:
    for raw in (None, "", "{", "[1, 2]", "3", '"red"', "null", "{'a': 1}", 3.5, float("nan")):
        assert decode_aspects(raw) == {}, raw


def test_decode_gives_a_new_dict() -> None:
    raw = '{"color": "red"}'
    decode_aspects(raw)["color"] = "blue"
    assert decode_aspects(raw) == {"color": "red"}


@given(st.lists(_VALID, max_size=12))
def test_decode_matches_the_catalog_legacy_rule(column: list) -> None:
    for raw in column:
        assert decode_aspects(raw) == _legacy_catalog_aspect(raw)


# -- aspect_values -----------------------------------------------------------------------------
@given(st.lists(_ANY, max_size=12), _KEYS)
def test_aspect_values(column: list, key: str) -> None:
    out = aspect_values(_column(column), key)
    assert out.dtype == object and out.shape == (len(column),)
    for raw, value in zip(column, out, strict=True):
        assert value == decode_aspects(raw).get(key)


# -- aspect_tokens -----------------------------------------------------------------------------
@settings(max_examples=150)
@given(st.lists(_ANY, max_size=25), st.integers(0, 8))
def test_aspect_tokens_properties(column: list, max_tokens: int) -> None:
    indptr, tok = aspect_tokens(_column(column), max_tokens=max_tokens)
    assert indptr.dtype == np.int64 and tok.dtype == np.int32
    assert indptr.shape == (len(column) + 1,)
    assert indptr[0] == 0 and indptr[-1] == len(tok)
    assert np.all(np.diff(indptr) >= 0)
    assert np.all((tok >= 0) & (tok < max_tokens))
    rows = [tok[indptr[i] : indptr[i + 1]] for i in range(len(column))]
    for i, row in enumerate(rows):
        assert len(set(row.tolist())) == len(row)  # an item carries a token once
        if not decode_aspects(column[i]):
            assert len(row) == 0
    items_per_token = Counter(t for row in rows for t in row.tolist())
    assert all(c >= 2 for c in items_per_token.values())
    assert len(items_per_token) <= max_tokens
    # ids are dense and by frequency: token 0 is on at least as many items as token 1, ...
    assert sorted(items_per_token) == list(range(len(items_per_token)))
    freq = [items_per_token[j] for j in range(len(items_per_token))]
    assert freq == sorted(freq, reverse=True)


@settings(max_examples=150)
@given(st.lists(_VALID, max_size=25), st.integers(0, 8))
def test_aspect_tokens_matches_the_legacy_feature_code(column: list, max_tokens: int) -> None:
    aspects = _column(column)
    got = aspect_tokens(aspects, max_tokens=max_tokens)
    want = _legacy_aspect_tokens(aspects, max_tokens)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_aspect_tokens_default_limit_matches_the_ranker() -> None:
    from recset.ranking import _features

    assert MAX_ASPECT_TOKENS == _features.MAX_ASPECT_TOKENS == 1024
    aspects = _column(['{"color": "red", "size": 1}', '{"color": "red", "size": 1}', None])
    for got, want in zip(aspect_tokens(aspects), _features.aspect_tokens(aspects), strict=True):
        np.testing.assert_array_equal(got, want)


# -- the re-pointed readers keep their outputs ---------------------------------------------------
@settings(deadline=None)  # its first example imports the recall readers (slow under load)
@given(st.lists(_VALID, max_size=12))
def test_readers_match_their_legacy_rules(column: list) -> None:
    aspects = _column(column)
    keys = ["model", "compatible_model", "color"]
    assert _aspect_table(aspects, keys) == _legacy_aspect_table(aspects, keys)
    cat = pd.DataFrame({"item_id": [f"i{j}" for j in range(len(column))], "aspects": column})
    events = pd.DataFrame(columns=["user_id", "item_id", "event", "timestamp"])
    if column:
        ds = Dataset.from_frames(cat, events)
        for key in keys:
            legacy = [None if a is None else json.loads(a).get(key) for a in aspects]
            np.testing.assert_array_equal(aspect_codes(ds, key), _factorize(legacy)[0])
            assert ds.catalog.aspect_values(key).tolist() == legacy
        for j, raw in enumerate(column):
            assert ds.catalog.aspect(j) == _legacy_catalog_aspect(raw)


def _legacy_text_tokens(raw: str | None) -> list[str]:
    if not raw:
        return []
    try:
        aspects = json.loads(raw)
    except ValueError:
        return []
    if not isinstance(aspects, dict):
        return []
    out: list[str] = []
    for key, value in aspects.items():
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            words = _words(str(value))
            out.extend(words)
            if words:
                out.append(f"{str(key).lower()}={'_'.join(words)}")
    return out


@given(st.lists(st.one_of(_VALID, st.text(max_size=12)), max_size=12))
def test_text_tokens_match_their_legacy_rule(column: list) -> None:
    for raw in column:
        assert _aspect_tokens(raw) == _legacy_text_tokens(raw)


@given(st.lists(_ANY, max_size=12))
def test_text_tokens_tolerate_anything(column: list) -> None:
    for raw in column:
        toks = _aspect_tokens(raw)
        assert isinstance(toks, list)
        if not decode_aspects(raw):
            assert toks == []
