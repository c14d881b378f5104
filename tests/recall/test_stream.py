"""The streamed build: chunked precompute equals the in-memory lists bit for bit, the blocked
pair similarity equals the full product, the memory budget, and the progress lines."""

from __future__ import annotations

import errno
import gc
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from recset.config import config_from_dict
from recset.data import Dataset
from recset.data.synthetic import SyntheticConfig, generate
from recset.errors import ConfigError, StorageError
from recset.progress import Ticker, memory, parse_memory, stage
from recset.recall import ListsWriter, Mixer, PrecomputedLists
from recset.recall._cooccurrence import asymmetric_cosine, cooccurrence_counts, ochiai, pair_topk
from recset.recall._lists import scan_blocks
from recset.signals import topk_rows

_FIELDS = ("item", "score", "ptr", "pos", "src", "src_score", "src_rank")

# two category mixes besides the default, so chunks mix seeds of several mixes
OVERRIDES = {
    "Electronics > Cameras": {
        "sources": ["co_view", "popular"],
        "filters": [],
        "fusion": "sequential",
        "limits": {"co_view": 3},
    },
    "c002": {"sources": ["co_purchase", "popular"], "weights": {"popular": 0.5}, "rrf_k": 5.0},
}


@pytest.fixture(scope="module")
def mixer() -> Mixer:
    syn = generate(SyntheticConfig(n_items=300, n_users=120, n_events=9000, seed=11))
    ds = Dataset.from_frames(syn.catalog, syn.events)
    return Mixer.fit(ds, config_from_dict({"categories": OVERRIDES}))


@pytest.fixture(scope="module")
def in_memory(mixer: Mixer) -> PrecomputedLists:
    """The lists as the in-memory path builds them: every seed mixed at once."""
    seeds = np.arange(mixer.n_items, dtype=np.int32)
    return PrecomputedLists.from_chunks([mixer.mix(seeds, 40)])


def _assert_same(a: PrecomputedLists, b: PrecomputedLists) -> None:
    for f in _FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        assert x.dtype == y.dtype and x.shape == y.shape, f
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes(), f


@pytest.mark.parametrize(
    ("chunk", "workers"), [(1, 1), (7, 2), (64, 3), (299, 2), (300, 1), (1000, 2)]
)
def test_streamed_lists_equal_the_in_memory_lists(
    mixer: Mixer, in_memory: PrecomputedLists, chunk: int, workers: int
) -> None:
    """Any chunk size (one seed, uneven chunks, one chunk, more than every seed), mixed on
    one or several threads, gives the in-memory lists bit for bit."""
    assert in_memory.ptr[-1] > in_memory.n_seeds  # rows with several reasons: a real check
    lists = mixer.precompute(40, chunk=chunk, workers=workers)
    assert isinstance(lists.item, np.memmap)
    _assert_same(lists, in_memory)


def test_budget_sets_the_chunk(mixer: Mixer, in_memory: PrecomputedLists) -> None:
    rss, _ = memory()
    small = mixer.chunk_size(40, rss + (1 << 20))
    large = mixer.chunk_size(40, rss + (8 << 30))
    assert 1 <= small < large
    _assert_same(mixer.precompute(40, max_memory=rss + (1 << 20)), in_memory)


def test_lists_written_to_a_directory_save_and_load(
    mixer: Mixer, in_memory: PrecomputedLists, tmp_path: Path
) -> None:
    lists = mixer.precompute(40, chunk=50, directory=tmp_path / "scratch")
    assert sorted(p.name for p in (tmp_path / "scratch").iterdir()) == sorted(
        f"{f}.npy" for f in _FIELDS
    )
    lists.save(tmp_path / "saved")
    _assert_same(PrecomputedLists.load(tmp_path / "saved"), in_memory)


def test_temporary_list_files_go_with_the_lists(mixer: Mixer) -> None:
    writer = ListsWriter(mixer.n_items, 40)
    writer.add(mixer.mix(np.arange(mixer.n_items, dtype=np.int32), 40))
    lists = writer.close()
    where = writer.directory
    if where.exists():  # not POSIX: removed with the lists
        del lists
        gc.collect()
    else:  # POSIX: removed at once, the memory maps still read the files
        assert int(lists.ptr[-1]) > 0 and int(lists.item[-1].max()) >= 0
    assert not where.exists()


def test_a_short_writer_refuses_to_close(mixer: Mixer, tmp_path: Path) -> None:
    writer = ListsWriter(10, 40, tmp_path / "w")
    writer.add(mixer.mix(np.arange(4, dtype=np.int32), 40))
    with pytest.raises(StorageError, match="4 list rows written, expected 10"):
        writer.close()
    assert not list((tmp_path / "w").glob("*.npy"))  # nothing half-written is left
    with pytest.raises(ValueError, match="width"):
        ListsWriter(10, 40, tmp_path / "v").add(mixer.mix(np.arange(2, dtype=np.int32), 5))


def test_a_failed_chunk_leaves_no_files(mixer: Mixer, tmp_path: Path) -> None:
    class Boom(RuntimeError):
        pass

    calls = []
    original = mixer.mix

    def failing(seeds: np.ndarray, n: int):  # noqa: ANN202
        calls.append(1)
        if len(calls) == 2:
            raise Boom
        return original(seeds, n)

    mixer.mix = failing  # type: ignore[method-assign]
    try:
        with pytest.raises(Boom):
            mixer.precompute(40, chunk=100, directory=tmp_path / "d")
    finally:
        del mixer.mix
    assert not list((tmp_path / "d").glob("*.npy"))


# -- saving streamed lists: linked or copied, never read through the maps ----------------


def _npy_bytes(arr: np.ndarray, tmp_path: Path, name: str) -> bytes:
    """What ``np.save`` writes for ``arr`` (the bytes the lists' files must hold)."""
    path = tmp_path / f"np-save-{name}.npy"
    np.save(path, np.asarray(arr), allow_pickle=False)
    return path.read_bytes()


def _assert_saved(saved: Path, in_memory: PrecomputedLists, tmp_path: Path) -> None:
    for f in _FIELDS:
        assert (saved / f"lists.{f}.npy").read_bytes() == _npy_bytes(
            getattr(in_memory, f), tmp_path, f
        ), f
    _assert_same(PrecomputedLists.load(saved), in_memory)


def test_saved_temporary_lists_are_the_writers_files(
    mixer: Mixer, in_memory: PrecomputedLists, tmp_path: Path
) -> None:
    """A temporary writer's files go into the saved directory without a copy where the
    system can link its anonymous files (Linux: the same inode), byte for byte what
    ``np.save`` writes; the lists stay readable after the save."""
    lists = mixer.precompute(40, chunk=37, workers=2)
    lists.save(tmp_path / "saved")
    _assert_saved(tmp_path / "saved", in_memory, tmp_path)
    backing = lists._files
    assert backing is not None
    for f in _FIELDS:
        same = (
            os.stat(tmp_path / "saved" / f"lists.{f}.npy").st_ino
            == os.fstat(backing.files[f].fileno()).st_ino
        )
        assert same == backing.anonymous, f  # linked exactly when the files are anonymous
    if os.path.isdir("/proc/self/fd") and hasattr(os, "O_TMPFILE"):
        assert backing.anonymous  # Linux: the link path is the one tested here
    _assert_same(lists, in_memory)
    lists.save(tmp_path / "again")  # a second save (another store) links or copies again
    _assert_saved(tmp_path / "again", in_memory, tmp_path)


def test_lists_are_copied_in_blocks_when_they_cannot_be_linked(
    mixer: Mixer, in_memory: PrecomputedLists, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another filesystem (EXDEV): each file is copied from the writer's open file in
    blocks smaller than the file, to a temporary name then renamed; the same bytes."""
    import recset.recall._lists as lists_mod

    lists = mixer.precompute(40, chunk=64)

    def no_link(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    reads: list[int] = []
    pread = os.pread

    def counting_pread(fd: int, n: int, offset: int) -> bytes:
        reads.append(n)
        return pread(fd, n, offset)

    monkeypatch.setattr(lists_mod.os, "link", no_link)
    monkeypatch.setattr(lists_mod.os, "pread", counting_pread)
    monkeypatch.setattr(lists_mod, "_COPY_BLOCK", 1000)
    lists.save(tmp_path / "copied")
    monkeypatch.undo()
    _assert_saved(tmp_path / "copied", in_memory, tmp_path)
    assert reads and max(reads) <= 1000 and len(reads) > len(_FIELDS)
    assert not list((tmp_path / "copied").glob("*.part"))
    item = tmp_path / "copied" / "lists.item.npy"
    assert lists._files is not None
    assert os.stat(item).st_ino != os.fstat(lists._files.files["item"].fileno()).st_ino


def test_lists_in_a_users_directory_are_copied_not_linked(
    mixer: Mixer, in_memory: PrecomputedLists, tmp_path: Path
) -> None:
    """Files a user keeps are copied: writing that directory again later (another
    precompute) leaves the saved lists as they were."""
    lists = mixer.precompute(40, chunk=50, directory=tmp_path / "scratch")
    lists.save(tmp_path / "saved")
    for f in _FIELDS:
        assert not os.path.samefile(
            tmp_path / "saved" / f"lists.{f}.npy", tmp_path / "scratch" / f"{f}.npy"
        )
    del lists
    gc.collect()
    other = mixer.precompute(20, chunk=50, directory=tmp_path / "scratch")  # rewrites them
    assert other.item.shape[1] == 20
    _assert_saved(tmp_path / "saved", in_memory, tmp_path)


def test_a_saved_engine_serves_the_lists_and_a_failed_save_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the store: the engine's version holds the lists (the manifest checks them),
    loads and answers like the built engine; a save that fails after the list files were
    linked into its temporary directory leaves no version directory and no temporary one,
    and the built engine's lists are still readable."""
    from recset.engine import Engine
    from recset.storage import Store

    syn = generate(SyntheticConfig(n_items=200, n_users=80, n_events=5000, seed=5))
    ds = Dataset.from_frames(syn.catalog, syn.events)
    engine = Engine.build(ds, config_from_dict({"build": {"candidates_per_seed": 30}}))
    built = engine.mixer.lists
    assert built is not None and built._files is not None
    store = tmp_path / "store.db"
    record = engine.save(store)
    loaded = Engine.load(store)
    assert loaded.mixer.lists is not None
    _assert_same(loaded.mixer.lists, built)
    seed = ds.items.values[3]
    assert loaded.recommend(seed, k=10) == engine.recommend(seed, k=10)
    with Store.open(store) as st:
        st.verify_artifact(st.artifact("engine", record.version))
        artifact_dir = st.artifact_dir

    import recset.storage._store as store_mod

    def failing_manifest(directory: Path) -> str:
        assert (directory / "mixer" / "lists" / "lists.item.npy").exists()
        raise OSError("disk full while writing the manifest")

    monkeypatch.setattr(store_mod, "write_manifest", failing_manifest)
    with pytest.raises(OSError, match="disk full"):
        engine.save(store)
    monkeypatch.undo()
    with Store.open(store) as st:
        assert [r.version for r in st.list_artifacts("engine")] == [record.version]
    assert not [p for p in Path(artifact_dir).rglob(".tmp-*")]
    _assert_same(engine.mixer.lists, built)
    assert Engine.load(store).recommend(seed, k=10) == engine.recommend(seed, k=10)


def test_scan_blocks_reads_every_row_once_and_drops_the_pages(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    arr = rng.integers(-5, 1000, size=(5000, 7)).astype(np.int32)
    np.save(tmp_path / "a.npy", arr)
    mapped = np.load(tmp_path / "a.npy", mmap_mode="r")
    blocks = [np.array(b) for b in scan_blocks(mapped, rows=333)]
    assert [len(b) for b in blocks] == [333] * 15 + [5]
    assert np.array_equal(np.concatenate(blocks), arr)
    assert np.array_equal(np.concatenate(list(scan_blocks(arr, rows=1000))), arr)
    assert np.array_equal(mapped, arr)  # dropped pages read back from the file


def test_value_ranges_are_those_of_the_whole_arrays(
    mixer: Mixer, in_memory: PrecomputedLists, monkeypatch: pytest.MonkeyPatch
) -> None:
    import recset.recall._lists as lists_mod

    monkeypatch.setattr(lists_mod, "_SCAN_BLOCK", 64)  # many blocks, ptr steps across them
    lists = mixer.precompute(40, chunk=100)
    got = lists.value_ranges()
    steps = np.diff(in_memory.ptr)
    assert got == {
        "item": (int(in_memory.item.min()), int(in_memory.item.max())),
        "pos": (int(in_memory.pos.min()), int(in_memory.pos.max())),
        "src": (int(in_memory.src.min()), int(in_memory.src.max())),
        "ptr_step": (int(steps.min()), int(steps.max())),
    }
    ptr = in_memory.ptr.copy()
    ptr[152] = ptr[151] - 1  # a step down from the last row of a block (8 rows) to the next
    bad = PrecomputedLists(**{f: getattr(in_memory, f) for f in _FIELDS if f != "ptr"}, ptr=ptr)
    assert bad.value_ranges()["ptr_step"][0] == -1


# -- the blocked pair similarity ---------------------------------------------------------


def _groups(seed: int, n_groups: int = 400, n_units: int = 120) -> tuple[sp.csr_matrix, np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 7, size=n_groups)
    rows = np.repeat(np.arange(n_groups), sizes)
    # a few popular units make ties and long rows
    cols = np.minimum(rng.zipf(1.6, size=len(rows)) - 1, n_units - 1)
    g = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_groups, n_units))
    g.sum_duplicates()
    g.data[:] = 1.0
    w = rng.choice(np.array([0.0, 0.5, 1.0], np.float32), size=n_groups)
    return g, w.astype(np.float32)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 0.3])
@pytest.mark.parametrize("min_support", [0.0, 1.0])
@pytest.mark.parametrize("block_pairs", [None, 1, 300])
def test_pair_topk_equals_the_full_product(
    alpha: float, min_support: float, block_pairs: int | None
) -> None:
    """Row blocks (one row each, a few hundred pairs, or all rows) on two threads give the
    top-k of the full similarity matrix, ties and all."""
    g, w = _groups(seed=int(alpha * 10 + min_support))
    counts, occ = cooccurrence_counts(g, w)
    if min_support > 0:
        counts = counts.multiply(counts >= min_support).tocsr()
    sim = ochiai(counts, occ) if alpha == 0.5 else asymmetric_cosine(counts, occ, alpha)
    ref_idx, ref_val = topk_rows(sim, 7, min_value=1e-12)
    assert (ref_idx[:, 0] >= 0).sum() > 20
    idx, val = pair_topk(
        g, w, 7, alpha=alpha, min_support=min_support, block_pairs=block_pairs, workers=2
    )
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(val, ref_val)


def test_pair_topk_of_nothing() -> None:
    g = sp.csr_matrix((3, 5), dtype=np.float32)
    idx, val = pair_topk(g, np.ones(3, np.float32), 4)
    assert idx.shape == (5, 4) and (idx == -1).all() and np.isneginf(val).all()


def test_pair_topk_under_a_budget_equals_no_budget() -> None:
    g, w = _groups(seed=5)
    a = pair_topk(g, w, 5, max_memory=1)  # nothing free: the smallest blocks
    b = pair_topk(g, w, 5)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


# -- budget and progress -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [("4GiB", 4 << 30), ("512MiB", 512 << 20), ("6GB", 6_000_000_000), ("1.5 GiB", 3 << 29)],
)
def test_parse_memory(text: str, size: int) -> None:
    assert parse_memory(text) == size


@pytest.mark.parametrize("bad", ["lots", "-1GiB", "0", "4 parsecs"])
def test_parse_memory_refuses_what_is_not_a_size(bad: str) -> None:
    with pytest.raises(ConfigError, match="memory budget"):
        parse_memory(bad)


def test_budget_setting_stays_out_of_the_config_hash() -> None:
    plain = config_from_dict({})
    budget = config_from_dict({"build": {"max_memory": "4GiB"}})
    assert budget.build.max_memory == 4 << 30
    assert budget.hash() == plain.hash()
    with pytest.raises(ConfigError, match="max_memory"):
        config_from_dict({"build": {"max_memory": "lots"}})


def test_stage_and_ticker_log_time_and_memory(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="recset.progress"):
        with stage("fit something"):
            pass
        with Ticker("loop", 10, every=0.0) as tick:
            tick.update(4)
            tick.update(6)  # the end: no line
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith("fit something: 0.0 s, ") and "peak" in lines[0]
    assert lines[1].startswith("loop: 4/10 (40%) in ") and "GiB" in lines[1]


# -- the command line -----------------------------------------------------------------------


def test_cli_build_with_a_budget_logs_every_stage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    from recset.cli import main

    data = tmp_path / "data"
    main(["generate", "--items", "300", "--users", "100", "--events", "6000", "--out", str(data)])
    store = tmp_path / "store"
    with caplog.at_level(logging.INFO, logger="recset.progress"):
        main(["build", "--data", str(data), "--store", str(store), "--max-memory", "2GiB"])
    assert "engine v1 is active" in capsys.readouterr().out
    lines = [r.getMessage() for r in caplog.records if r.name == "recset.progress"]
    for label in ("fit popular", "fit co_purchase", "precompute lists"):
        assert any(x.startswith(f"{label}: ") and "peak" in x for x in lines), (label, lines)

    with pytest.raises(SystemExit) as exc:
        main(["build", "--data", str(data), "--store", str(store), "--max-memory", "lots"])
    assert exc.value.code == 2
    assert "memory budget must be a size" in capsys.readouterr().err


def test_text_embeddings_train_on_a_sample_and_embed_every_item() -> None:
    from recset.recall import TextEmbeddingConfig, embed_items

    syn = generate(SyntheticConfig(n_items=300, n_users=120, n_events=9000, seed=11))
    data = Dataset.from_frames(syn.catalog, syn.events)
    small = embed_items(data, TextEmbeddingConfig(max_train_items=30))
    again = embed_items(data, TextEmbeddingConfig(max_train_items=30))
    full = embed_items(data, TextEmbeddingConfig(max_train_items=10_000))
    assert small.tobytes() == again.tobytes()  # the sample is seeded
    norms = np.linalg.norm(small, axis=1)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)  # every item embedded, 270 unseen
    assert not np.array_equal(small, full)
    # a sample of 30 lists still puts items of one category closer than items of others
    cat = data.catalog.category
    same = cat[:, None] == cat[None, :]
    sim = small @ small.T
    assert sim[same].mean() > sim[~same].mean() + 0.1


def test_text_embeddings_in_row_blocks_are_those_of_one_block(monkeypatch) -> None:  # noqa: ANN001
    # the normalising steps run in place on row blocks to bound memory: blocks of 7 rows,
    # with items that have no text at all (zero rows), give the same bytes as one block
    import recset.recall._text as text
    from recset.recall import TextEmbeddingConfig, embed_items

    syn = generate(SyntheticConfig(n_items=200, n_users=80, n_events=4000, seed=5))
    catalog = syn.catalog.copy()
    blank = np.arange(len(catalog)) % 9 == 0
    for col in ("title", "aspects", "category_id", "category_path", "product_type", "brand"):
        catalog.loc[blank, col] = None
    data = Dataset.from_frames(catalog, syn.events)
    cfg = TextEmbeddingConfig(max_train_items=100)
    whole = embed_items(data, cfg)
    monkeypatch.setattr(text, "_ROWS", 7)
    blocked = embed_items(data, cfg)
    assert blocked.tobytes() == whole.tobytes()
    assert (whole[blank] == 0).all() and (np.abs(whole[~blank]).sum(axis=1) > 0).all()


# -- the precompute's vectorised steps equal their plain definitions ----------------------


@pytest.mark.parametrize("rrf_k", [0.0, 60.0, 2.5])
def test_rrf_table_equals_the_per_entry_formula(rrf_k: float) -> None:
    """The fusion score gathered from a (source, rank) table: the same float64 bits as
    ``sum_j where(rank >= 0, w_j / (rrf_k + rank + 1), 0)`` (rrf_k = 0 with absent ranks
    would divide by zero if they were not masked)."""
    from recset.config import MixConfig
    from recset.recall.mixer import _rrf

    order = ("a", "b", "c", "d")
    mix = MixConfig(sources=["a", "b", "c"], weights={"a": 1.3, "c": 0.2}, rrf_k=rrf_k)
    rng = np.random.default_rng(4)
    rank = rng.integers(-1, 250, size=(3000, len(order))).astype(np.int32)
    rank[::7] = -1  # rows with no source
    weights = np.array([mix.weight(s) for s in order], dtype=np.float64)
    want = np.where(rank >= 0, weights / (rrf_k + np.maximum(rank, 0) + 1.0), 0.0).sum(axis=1)
    got = _rrf(mix, order, rank)
    assert got.dtype == np.float64 and got.tobytes() == want.tobytes()
    assert _rrf(mix, order, np.zeros((0, len(order)), np.int32)).shape == (0,)


def test_compatibility_keep_equals_the_rule_definition() -> None:
    """A candidate is dropped exactly when, under some rule, the seed's and the candidate's
    aspect values (either way round) both exist and differ; padding and unknown seeds are
    never dropped."""
    from recset.recall.compatibility import CompatibilityConfig, CompatibilityRecall

    rng = np.random.default_rng(8)
    n_items, n_rules = 60, 2
    comp = CompatibilityRecall(CompatibilityConfig())
    codes = lambda: np.where(  # noqa: E731
        rng.random((n_rules, n_items)) < 0.5, rng.integers(0, 4, (n_rules, n_items)), -1
    ).astype(np.int32)
    comp.seed_codes_, comp.cand_codes_ = codes(), codes()
    comp.table_ = np.full((4, 3), -1, np.int32)
    comp.table_score_ = np.full((4, 3), -np.inf, np.float32)
    seeds = np.r_[rng.integers(0, n_items, 40), -1, n_items + 5].astype(np.int32)
    items = np.where(rng.random((42, 25)) < 0.85, rng.integers(0, n_items, (42, 25)), -1)
    items = items.astype(np.int32)
    want = np.ones(items.shape, dtype=bool)
    for i, s in enumerate(seeds):
        for p, c in enumerate(items[i]):
            if c < 0 or not 0 <= s < n_items:
                continue
            for r in range(n_rules):
                for a, b in (
                    (comp.seed_codes_[r, s], comp.cand_codes_[r, c]),
                    (comp.cand_codes_[r, s], comp.seed_codes_[r, c]),
                ):
                    if a >= 0 and b >= 0 and a != b:
                        want[i, p] = False
    got = comp.keep(seeds, items)
    assert (~want).sum() > 20 and want.sum() > 20  # both outcomes planted
    assert np.array_equal(got, want)


def test_compact_equals_the_nonzero_definition(mixer: Mixer) -> None:
    from recset.recall._lists import _compact

    m = mixer.mix(np.arange(120, dtype=np.int32), 30)
    seed_i, pos_i, src_i = np.nonzero(m.source_rank >= 0)
    c = _compact(m)
    assert len(seed_i) > 120
    assert np.array_equal(c["ptr"], np.bincount(seed_i, minlength=120))
    assert np.array_equal(c["pos"], pos_i) and c["pos"].dtype == np.int16
    assert np.array_equal(c["src"], src_i) and c["src"].dtype == np.int8
    assert c["src_score"].tobytes() == m.source_score[seed_i, pos_i, src_i].tobytes()
    assert np.array_equal(c["src_rank"], m.source_rank[seed_i, pos_i, src_i])
