"""Test helpers shipped with recset (imported by test suites only, never by ``import recset``).

:class:`RecallSetContract` is the contract every recall set must pass; a plugin's test suite
subclasses it and provides the ``recall_cls`` and ``dataset`` fixtures (see its docstring).
"""

from recset.testing._contract import RecallSetContract, dependency_specs, fit_dependencies

__all__ = ["RecallSetContract", "dependency_specs", "fit_dependencies"]
