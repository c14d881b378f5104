"""Item text embeddings from title, aspects, category path, product type and brand.

A :class:`gensim.models.FastText` model is trained on the catalog's own token lists (one
"sentence" per item), so every word gets a vector and words never seen in training still
get one from their character n-grams. An item's vector is the weighted mean of its tokens'
vectors (SIF weights ``a / (a + p(w))`` by default, which damp words such as colours that
appear all over the catalog), optionally minus the catalog's common direction (the first
principal component, as in the SIF paper), L2-normalised. Items without any text get a zero
vector.

gensim is imported inside :func:`embed_items` so that ``import recset`` never pays for it.
"""

from __future__ import annotations

import ctypes
import logging
import re
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from pydantic import Field

from recset.data import Dataset, decode_aspects
from recset.recall._base import SourceConfig

_log = logging.getLogger(__name__)

_ROWS = 1 << 16  # rows per block of the in-place steps on the (n_items, dim) table

# words, keeping model codes such as "cam-117" or "2.5" whole
_WORD = re.compile(r"[^\W_]+(?:[-_.][^\W_]+)*")


_PORTABLE_LOCK = threading.Lock()


def _capsule_pointer(capsule: Any) -> int:
    """The pointer a Cython ``__pyx_capi__`` capsule holds."""
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype = ctypes.c_void_p
    get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    ptr = get_pointer(capsule, get_name(capsule))
    if not ptr:
        raise ValueError("empty capsule")
    return int(ptr)


_PORTABLE_GENSIM_MAJORS = ("4",)
"""gensim major versions whose ``word2vec_inner`` pointers :func:`portable_fasttext` knows."""


@contextmanager
def portable_fasttext() -> Iterator[bool]:
    """gensim's word2vec / FastText training with its plain C loops instead of BLAS.

    gensim's training kernels take their dot product and ``axpy`` through two function
    pointers (``our_dot``, ``our_saxpy`` of ``gensim.models.word2vec_inner``) that point to
    BLAS (``dsdot`` / ``saxpy``) whenever a BLAS is found. OpenBLAS picks its kernels by the
    CPU it runs on (AVX-512, AVX2, ...) and they add in different orders, so the same
    training gave other vectors on another machine (differences up to 5e-3 on the Instacart
    catalog after 3 epochs, ``OPENBLAS_CORETYPE=Haswell`` against SkylakeX on one machine),
    and with them other neighbours, candidates and ranker label sets. Inside this context
    both pointers point to gensim's own loops (``our_dot_noblas`` / ``our_saxpy_noblas``:
    one sum in index order, compiled into the gensim wheel), whose results do not depend on
    the CPU's vector extensions. The pointers are process-wide: a lock keeps two of these
    contexts apart and they are restored on exit.

    Yields True when the switch was made; False (with a warning) when this gensim is not a
    4.x release (whose kernels this was written against: another major version may give
    the pointers other meanings) or does not export them, and training then runs as gensim
    set it up.
    """
    try:
        import gensim
        from gensim.models import word2vec_inner

        major = str(getattr(gensim, "__version__", "")).split(".")[0]
        if major not in _PORTABLE_GENSIM_MAJORS:
            raise ValueError(f"gensim {gensim.__version__} is not a 4.x release")

        capi = word2vec_inner.__pyx_capi__
        dot_var = _capsule_pointer(capi["our_dot"])
        saxpy_var = _capsule_pointer(capi["our_saxpy"])
        dot_plain = _capsule_pointer(capi["our_dot_noblas"])
        saxpy_plain = _capsule_pointer(capi["our_saxpy_noblas"])
    except (ImportError, AttributeError, KeyError, ValueError, TypeError) as exc:
        _log.warning(
            "text embeddings: cannot switch gensim to its portable loops (%r); the "
            "vectors may differ slightly between machines",
            exc,
        )
        yield False
        return
    dot = ctypes.c_void_p.from_address(dot_var)
    saxpy = ctypes.c_void_p.from_address(saxpy_var)
    with _PORTABLE_LOCK:
        saved = dot.value, saxpy.value
        dot.value, saxpy.value = dot_plain, saxpy_plain
        try:
            yield True
        finally:
            dot.value, saxpy.value = saved


class TextEmbeddingConfig(SourceConfig):
    """Settings of :func:`embed_items`.

    Attributes
    ----------
    embedding_size : int
        Dimension of the word and item vectors.
    epochs : int
        FastText training epochs over the catalog's token lists.
    window : int
        Context window (items are short bags of about 15 tokens; training cost grows
        linearly with it).
    min_count : int
        Words seen in fewer items than this get no own vector during training (they are
        still embedded from their character n-grams).
    min_n, max_n : int
        Character n-gram lengths of FastText's subword vectors.
    bucket : int
        Number of hash buckets for n-gram vectors (memory: ``bucket * embedding_size * 4``
        bytes).
    max_train_items : int
        At most this many distinct token lists (sampled with ``seed``) train the model;
        every item is embedded. Bounds fit time on large catalogs.
    weighting : {"sif", "idf", "none"}
        Token weights in the item mean: smooth inverse frequency ``a / (a + p(w))``, inverse
        document frequency ``log(N / df)``, or uniform.
    sif_a : float
        The ``a`` of the SIF weights.
    remove_common_component : bool
        Subtract the projection on the first principal component of the item vectors.
    use_aspects, use_category, use_product_type, use_brand : bool
        Which fields besides the title contribute tokens.
    seed : int
        Seed of FastText (trained with one worker, so results repeat exactly).
    """

    embedding_size: int = Field(48, ge=2, le=1024)
    epochs: int = Field(3, ge=1)
    window: int = Field(5, ge=1)
    min_count: int = Field(2, ge=1)
    min_n: int = Field(3, ge=1)
    max_n: int = Field(5, ge=0)
    bucket: int = Field(200_000, ge=1)
    max_train_items: int = Field(20_000, ge=1)
    weighting: Literal["sif", "idf", "none"] = "sif"
    sif_a: float = Field(1e-3, gt=0)
    remove_common_component: bool = True
    use_aspects: bool = True
    use_category: bool = True
    use_product_type: bool = True
    use_brand: bool = True
    seed: int = 0


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _aspect_tokens(raw: str | None) -> list[str]:
    """Value words of every scalar aspect, plus one ``key=value`` token per aspect.

    The qualified token tells ``model=cam-117`` (a camera) apart from
    ``compatible_model=cam-117`` (a lens for it), which share the bare word.
    """
    out: list[str] = []
    for key, value in decode_aspects(raw).items():
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            words = _words(str(value))
            out.extend(words)
            if words:
                out.append(f"{str(key).lower()}={'_'.join(words)}")
    return out


def item_tokens(dataset: Dataset, config: TextEmbeddingConfig) -> list[list[str]]:
    """The token list of every item, in dense item id order (possibly empty lists).

    Returns
    -------
    list of list of str, length n_items
    """
    return list(iter_item_tokens(dataset, config))


def iter_item_tokens(
    dataset: Dataset, config: TextEmbeddingConfig, rows: Iterable[int] | None = None
) -> Iterator[list[str]]:
    """The token list of each item of ``rows`` (default: every item, in id order), one at a
    time, so that a large catalog's tokens are never all held at once."""
    cat = dataset.catalog

    def per_id(values: NDArray[np.object_], fn: object) -> list[list[str]]:
        return [fn(str(v)) for v in values]  # type: ignore[operator]

    cat_tokens: list[list[str]] = []
    if config.use_category:
        # path words ("electronics", "cameras", ...) plus the leaf as one token
        cat_tokens = per_id(
            cat.category_path,
            lambda p: _words(p) + [f"cat={'_'.join(_words(p.split('>')[-1]))}"],
        )
    type_tokens: list[list[str]] = []
    if config.use_product_type:
        type_tokens = per_id(dataset.product_types.values, lambda t: [*_words(t), f"type={t}"])
    brand_tokens: list[list[str]] = []
    if config.use_brand:
        brand_tokens = per_id(dataset.brands.values, lambda b: _words(b))

    for i in range(dataset.n_items) if rows is None else rows:
        title = cat.title[i]
        toks = _words(title) if title else []
        if config.use_aspects:
            toks.extend(_aspect_tokens(cat.aspects[i]))
        if cat_tokens and cat.category[i] >= 0:
            toks.extend(cat_tokens[cat.category[i]])
        if type_tokens and cat.product_type[i] >= 0:
            toks.extend(type_tokens[cat.product_type[i]])
        if brand_tokens and cat.brand[i] >= 0:
            toks.extend(brand_tokens[cat.brand[i]])
        yield toks


def text_groups(
    dataset: Dataset, config: TextEmbeddingConfig
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Items grouped by the text fields their token lists are made of.

    Items with the same title, aspects, category, product type and brand (only the fields
    ``config`` uses) get the same token list, so the list is made once per group.

    Returns
    -------
    group : ndarray of int64, shape (n_items,)
        Each item's group, numbered by first appearance.
    first : ndarray of int64, shape (n_groups,)
        The first item of each group (increasing).
    """
    import pandas as pd

    cat = dataset.catalog
    n = dataset.n_items
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)

    def codes(values: NDArray[np.generic]) -> NDArray[np.int64]:
        # None is a value of its own (code 0), not a missing one
        return pd.factorize(values, use_na_sentinel=False)[0].astype(np.int64)

    key = codes(cat.title)
    fields: list[NDArray[np.generic]] = []
    if config.use_aspects:
        fields.append(cat.aspects)
    if config.use_category:
        fields.append(cat.category)
    if config.use_product_type:
        fields.append(cat.product_type)
    if config.use_brand:
        fields.append(cat.brand)
    for values in fields:
        other = codes(values)
        # both codes are below n_items: the pair's code fits in 64 bits up to ~3e9 items
        key = codes(key * (int(other.max()) + 1) + other)
    _, first = np.unique(key, return_index=True)
    return key, first.astype(np.int64)


def word_vectors(wv: object, words: list[str], *, block: int = 8192) -> NDArray[np.float32]:
    """``wv[w]`` of every word, in one array: the trained vector of a word in the model's
    vocabulary, else the mean of its character n-gram vectors (zero without n-grams).

    The same float32 values as gensim's :meth:`FastTextKeyedVectors.get_vector`, which sums
    a word's n-gram vectors one at a time in Python; here a block of words is summed at once,
    n-gram position by position, so each word's vectors are added in gensim's order.

    Parameters
    ----------
    wv : gensim.models.fasttext.FastTextKeyedVectors
    words : list of str
    block : int
        Out-of-vocabulary words whose n-gram rows are gathered at a time.

    Returns
    -------
    ndarray of float32, shape (len(words), vector_size)
    """
    from gensim.models.fasttext import ft_ngram_hashes

    kv = wv.key_to_index  # type: ignore[attr-defined]
    vectors = wv.vectors  # type: ignore[attr-defined]
    out = np.zeros((len(words), vectors.shape[1]), dtype=np.float32)
    pos = np.fromiter((kv.get(w, -1) for w in words), dtype=np.int64, count=len(words))
    known = pos >= 0
    out[known] = vectors[pos[known]]
    bucket = wv.bucket  # type: ignore[attr-defined]
    if bucket == 0:  # no n-grams: words outside the vocabulary stay zero
        return out
    ngrams = wv.vectors_ngrams  # type: ignore[attr-defined]
    min_n, max_n = wv.min_n, wv.max_n  # type: ignore[attr-defined]
    oov = np.flatnonzero(~known)
    for a in range(0, len(oov), block):
        rows = oov[a : a + block]
        hashes = [ft_ngram_hashes(words[j], min_n, max_n, bucket) for j in rows.tolist()]
        lens = np.fromiter((len(h) for h in hashes), dtype=np.int64, count=len(hashes))
        some = lens > 0
        if not some.any():
            continue
        flat = np.fromiter((x for h in hashes for x in h), dtype=np.int64, count=int(lens.sum()))
        starts = (np.cumsum(lens) - lens)[some]
        lens = lens[some]
        # the j-th n-gram of every word at once: each word's sum in gensim's order
        sums = np.zeros((len(lens), out.shape[1]), dtype=np.float32)
        for j in range(int(lens.max())):
            live = np.flatnonzero(lens > j)
            sums[live] += ngrams[flat[starts[live] + j]]
        out[rows[some]] = sums / lens.astype(np.float32)[:, None]
    return out


def embed_items(dataset: Dataset, config: TextEmbeddingConfig | None = None) -> NDArray[np.float32]:
    """Text embeddings of every item of ``dataset``.

    Parameters
    ----------
    dataset : Dataset
    config : TextEmbeddingConfig, optional

    Returns
    -------
    ndarray of float32, shape (n_items, config.embedding_size)
        L2-normalised rows; all-zero rows for items without any text.
    """
    from gensim.models import FastText  # heavy: imported only when embedding
    from threadpoolctl import threadpool_limits

    cfg = config or TextEmbeddingConfig()
    t0 = time.perf_counter()
    n = dataset.n_items
    dim = cfg.embedding_size

    # one pass over the items with distinct text fields (variants often repeat a title and
    # its aspects): the vocabulary of every token in the catalog, the group x token count
    # matrix, and the first item of each distinct token list (by its hash: the lists
    # themselves are not kept, which on a large catalog would cost more than the rest)
    group, group_first = text_groups(dataset, cfg)
    n_groups = len(group_first)
    vocab: dict[str, int] = {}
    indptr = np.zeros(n_groups + 1, dtype=np.int64)
    col_parts: list[NDArray[np.int32]] = []
    cols: list[int] = []
    done = 0
    first_of: dict[int, int] = {}
    for g, toks in enumerate(iter_item_tokens(dataset, cfg, group_first.tolist())):
        for t in toks:
            cols.append(vocab.setdefault(t, len(vocab)))
        indptr[g + 1] = done + len(cols)
        if toks:
            first_of.setdefault(hash(tuple(toks)), int(group_first[g]))
        if len(cols) >= 1 << 20:
            col_parts.append(np.asarray(cols, dtype=np.int32))
            done += len(cols)
            cols = []
    col_parts.append(np.asarray(cols, dtype=np.int32))
    del cols
    if not vocab:
        _log.warning("text embeddings: no item has any text; all vectors are zero")
        return np.zeros((n, dim), dtype=np.float32)
    col_arr = np.concatenate(col_parts)
    del col_parts
    counts = sp.csr_matrix(
        (np.ones(len(col_arr), dtype=np.float32), col_arr, indptr), shape=(n_groups, len(vocab))
    )
    del col_arr
    counts.sum_duplicates()
    # items per group: the catalog's token statistics weigh each group by it
    group_size = np.bincount(group, minlength=n_groups).astype(np.float64)
    t_tok = time.perf_counter()

    # train on distinct token lists (colour variants repeat almost the same text), at most
    # max_train_items of them: a large catalog trains on a sample, and every item is still
    # embedded from the trained word and n-gram vectors
    firsts = list(first_of.values())
    del first_of
    if len(firsts) > cfg.max_train_items:
        rng = np.random.default_rng(cfg.seed)
        pick = np.sort(rng.choice(len(firsts), cfg.max_train_items, replace=False))
        firsts = [firsts[j] for j in pick]
    corpus = list(iter_item_tokens(dataset, cfg, firsts))
    model = FastText(
        vector_size=dim,
        window=cfg.window,
        min_count=cfg.min_count,
        min_n=cfg.min_n,
        max_n=cfg.max_n,
        bucket=cfg.bucket,
        epochs=cfg.epochs,
        seed=cfg.seed,
        workers=1,  # one worker thread: the only way gensim training repeats exactly
        sg=0,
    )
    model.build_vocab(corpus_iterable=corpus)
    if not model.wv.key_to_index:
        # e.g. a catalog whose only text is ids that each appear once (below min_count)
        _log.warning(
            "text embeddings: no word reaches min_count=%d; all vectors are zero", cfg.min_count
        )
        return np.zeros((n, dim), dtype=np.float32)
    with portable_fasttext():  # the same vectors whatever the CPU (and OpenBLAS kernel)
        model.train(corpus_iterable=corpus, total_examples=len(corpus), epochs=cfg.epochs)
    t_train = time.perf_counter()

    words = list(vocab)
    word_vecs = word_vectors(model.wv, words)
    norms = np.linalg.norm(word_vecs, axis=1, keepdims=True)
    word_vecs /= np.where(norms > 0, norms, 1.0)

    # token statistics over items (integers, exact in float64)
    df = np.asarray((counts > 0).T @ group_size).ravel()
    if cfg.weighting == "sif":
        tf = np.asarray(counts.T @ group_size).ravel()
        weight = cfg.sif_a / (cfg.sif_a + tf / tf.sum())
    elif cfg.weighting == "idf":
        weight = np.log((1.0 + n) / (1.0 + df)) + 1.0
    else:
        weight = np.ones(len(words))
    weighted = counts @ sp.diags(weight.astype(np.float32))
    total = np.asarray(weighted.sum(axis=1)).ravel()
    group_vecs = np.asarray(weighted @ word_vecs, dtype=np.float32)
    del weighted, word_vecs
    np.divide(
        group_vecs, total.astype(np.float32)[:, None], out=group_vecs, where=total[:, None] > 0
    )
    # every item gets its group's row; from here on in place and in row blocks: a masked
    # update (out[mask] /= ...) or a whole (n_items, dim) temporary would each cost another
    # copy of the table (576 MB at 3M items)
    out = np.empty((n, dim), dtype=np.float32)
    for a in range(0, n, _ROWS):
        np.take(group_vecs, group[a : a + _ROWS], axis=0, out=out[a : a + _ROWS])
    has_text = total[group] > 0
    del group_vecs

    if cfg.remove_common_component and has_text.sum() > 1:
        rows = np.flatnonzero(has_text)
        if len(rows) > 20_000:
            rows = np.sort(np.random.default_rng(cfg.seed).choice(rows, 20_000, replace=False))
        # one BLAS thread: 20x cheaper on this tall, thin matrix than OpenBLAS's threads,
        # and the same bits whatever the machine's core count
        with threadpool_limits(1, "blas"):
            _, _, vt = np.linalg.svd(out[rows].astype(np.float64), full_matrices=False)
        # the projection in float64 by numpy's own products and sums (not BLAS, whose
        # kernels differ by CPU), rounded once to float32: the same bits on every machine
        # but where the SVD's last float64 bits happen to round differently
        pc = vt[0]
        text_rows = np.flatnonzero(has_text)
        for a in range(0, len(text_rows), _ROWS):
            r = text_rows[a : a + _ROWS]
            block = out[r].astype(np.float64)
            proj = (block * pc).sum(axis=1)
            out[r] = block - np.outer(proj, pc)

    norms = np.empty(n, dtype=np.float32)
    for a in range(0, n, _ROWS):
        norms[a : a + _ROWS] = np.linalg.norm(out[a : a + _ROWS], axis=1)
    ok = norms > 1e-8
    np.divide(out, norms[:, None], out=out, where=ok[:, None])
    out[~ok] = 0.0
    _log.debug(
        "text embeddings: tokenise %.2fs, train %.2fs (%d lists), embed %.2fs",
        t_tok - t0,
        t_train - t_tok,
        len(corpus),
        time.perf_counter() - t_train,
    )
    _log.info(
        "text embeddings: %d items (%d without text), %d distinct tokens, dim %d",
        n,
        int((~ok).sum()),
        len(words),
        dim,
    )
    return out
