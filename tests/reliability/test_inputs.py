"""The malformed-input corpus (issue 12): every bad input gets a clear error naming the file,
row or key, or is accepted on purpose; none leaves a traceback or changes the built store.

The cases live in ``inputs_corpus.py`` beside this file (``bench/reliability_inputs.py``
prints their figures for docs/reliability.md).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import inputs_corpus as corpus  # noqa: E402


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[corpus.Context]:
    ctx = corpus.make_context(tmp_path_factory.mktemp("inputs"))
    yield ctx
    # after every case: the store still serves exactly what it served before
    assert ctx.store_unchanged()


def test_corpus_is_large_enough() -> None:
    refusals = [c for c in corpus.CASES if not c.accept]
    assert len(refusals) >= 100 and len({c.id for c in corpus.CASES}) == len(corpus.CASES)
    assert all(c.expect for c in refusals), "a refusal must say what its message names"
    assert all(c.note for c in corpus.CASES if c.accept), "an acceptance must say why"


@pytest.mark.parametrize("case", corpus.CASES, ids=[c.id for c in corpus.CASES])
def test_input(case: corpus.Case, ctx: corpus.Context) -> None:
    outcome = corpus.run_case(case, ctx)
    want = "accepted" if case.accept else "clear"
    assert outcome.kind == want, f"{case.id}: {outcome.kind}\n{outcome.message}"
    assert not outcome.store_changed, f"{case.id} changed the store"


def test_large_batches_run_in_slices_with_the_same_answers(
    ctx: corpus.Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    import recset.engine._engine as engine_module

    engine = corpus._engine(ctx)
    seeds = [*ctx.catalog["item_id"].iloc[:10], "never-seen-item"]
    one_by_one = [engine.recommend(s, k=5) for s in seeds]
    exclude = [[recs[0].item_id] if i % 3 == 0 else [] for i, recs in enumerate(one_by_one)]
    whole = engine.recommend_batch(seeds, k=5, exclude=exclude)
    monkeypatch.setattr(engine_module, "MAX_SEEDS_PER_RUN", 3)
    assert engine.recommend_batch(seeds, k=5, exclude=exclude) == whole
    for i, recs in enumerate(whole):
        assert len(recs) == 5 and not set(exclude[i]) & {r.item_id for r in recs}
