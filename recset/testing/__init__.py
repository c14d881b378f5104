"""Test helpers shipped with recset (imported by test suites only, never by ``import recset``).

:class:`RecallSetContract` is the contract every recall set must pass; a plugin's test suite
subclasses it and provides the ``recall_cls`` and ``dataset`` fixtures (see its docstring).
:mod:`recset.testing.releases` is the kill-test harness of atomic releases;
:func:`assert_same_lists` / :func:`assert_same_source_state` compare two builds of one engine.
"""

from recset.testing import _releases as releases
from recset.testing._contract import RecallSetContract, dependency_specs, fit_dependencies
from recset.testing._engines import assert_same_lists, assert_same_source_state

__all__ = [
    "RecallSetContract",
    "assert_same_lists",
    "assert_same_source_state",
    "dependency_specs",
    "fit_dependencies",
    "releases",
]


def recommend_dense(engine, seeds, k, *, users=None):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
    """``engine``'s served batch for dense ``seeds`` (and dense ``users``): the pipeline's
    output on a :class:`~recset.pipeline.Request`, for tests that check arrays."""
    from recset.pipeline import Request

    return engine.run_pipeline(Request.of(seeds, users, k))
