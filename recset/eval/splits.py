"""Train/test splits and backtest queries (they live in :mod:`recset.data`; kept here for
the evaluation code that imports them from ``recset.eval.splits``)."""

from recset.data import Queries, Split, Targets, basket_queries, leave_last_split, time_split

__all__ = ["Queries", "Split", "Targets", "basket_queries", "leave_last_split", "time_split"]
