"""Hypothesis strategies for query trees (tagd.index.query nodes), shared by the parser and
the search engine tests: each test brings its own leaves."""

from __future__ import annotations

from hypothesis import strategies as st

from tagd.index.query_tree import SOURCES, STATES, STATUSES, And, Not, Or, Source, State, Status

# Leaves every test can use as they are.
FACETS = (st.sampled_from(STATUSES).map(Status), st.sampled_from(SOURCES).map(Source),
          st.sampled_from(STATES).map(State))


def _combine(kind: type, children: list) -> object:
    """And/Or of `children`, flattened as the parser builds them (no And directly inside And)."""
    flat = []
    for child in children:
        flat.extend(child.children if isinstance(child, kind) else (child,))
    return kind(tuple(flat))


def query_trees(leaves: st.SearchStrategy, max_leaves: int) -> st.SearchStrategy:
    """Trees of Not/And/Or over `leaves`."""
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            inner.map(Not),
            st.lists(inner, min_size=2, max_size=3).map(lambda cs: _combine(And, cs)),
            st.lists(inner, min_size=2, max_size=3).map(lambda cs: _combine(Or, cs)),
        ),
        max_leaves=max_leaves,
    )
