"""Add-only refinement: the user's keywords are never removed, altered or reordered."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from tagd.refine import MachineTag, refine_add_only

words = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=12)
tags = st.lists(st.builds(MachineTag, words, st.floats(0, 1, allow_nan=False)), max_size=8)


@settings(max_examples=400)
@given(user=st.lists(words, max_size=8, unique=True), model=tags,
       added=st.lists(words, max_size=4), rejected=st.lists(words, max_size=4))
def test_add_only_never_touches_user_keywords(user, model, added, rejected) -> None:
    # `added` are tagd's earlier additions: they are only the user's if the user did not get them from tagd.
    current = [*user, *[a for a in added if a not in user]]
    result = refine_add_only(current, model, previously_added=[a for a in added if a not in user],
                             previously_written=current, previously_rejected=rejected)
    assert result.keywords[: len(user)] == user  # same keywords, same spelling, same order
    rejected_folded = {r.casefold() for r in result.rejected}
    assert not any(a.casefold() in rejected_folded for a in result.added)
    user_f = {k.casefold() for k in user}
    assert all(a.casefold() not in user_f for a in result.added)  # tagd never adds a case-duplicate
    assert len({a.casefold() for a in result.added}) == len(result.added)


def test_model_tags_are_added_best_first() -> None:
    result = refine_add_only(["holiday"], [MachineTag("animal", 0.9), MachineTag("cat", 0.95)])
    assert result.keywords == ["holiday", "cat", "animal"]
    assert result.added == ["cat", "animal"]


def test_user_spelling_wins() -> None:
    result = refine_add_only(["Cat"], [MachineTag("cat", 0.9)])
    assert result.keywords == ["Cat"] and result.added == [] and result.machine_tags == {"Cat": 0.9}


def test_tagd_replaces_only_its_own_earlier_additions() -> None:
    result = refine_add_only(["holiday", "dog"], [MachineTag("cat", 0.9)],
                             previously_added=["dog"], previously_written=["holiday", "dog"])
    assert result.keywords == ["holiday", "cat"]


def test_deleted_addition_is_rejected_forever() -> None:
    result = refine_add_only(["holiday"], [MachineTag("dog", 0.9)],
                             previously_added=["dog"], previously_written=["holiday", "dog"])
    assert result.keywords == ["holiday"] and result.rejected == ["dog"]
    again = refine_add_only(["holiday"], [MachineTag("dog", 0.99)], previously_rejected=result.rejected)
    assert again.keywords == ["holiday"]


def test_neighbours_bring_a_private_tag() -> None:
    """A tag no model knows ("mittens") comes from visually similar library photos only."""
    from tagd.refine import LibraryStats, Neighbour, refine

    library = LibraryStats.from_tag_sets([{"mittens", "cat"}] * 6 + [{"beach"}] * 10 + [{"car"}] * 10)
    cats = [Neighbour(0.9 - i * 0.01, frozenset({"mittens", "cat"})) for i in range(6)]
    others = [Neighbour(0.5 - i * 0.01, frozenset({"beach"})) for i in range(10)]
    got = refine([], {"cat": 0.95}, neighbours=cats + others, library=library, model_known={"cat"}, candidates=["cat"])
    assert "mittens" in got.added and "cat" in got.added
    beachy = [Neighbour(0.9 - i * 0.01, frozenset({"beach"})) for i in range(10)]
    got = refine([], {"cat": 0.01}, neighbours=beachy + others, library=library, model_known={"cat"}, candidates=[])
    assert "mittens" not in got.added


def test_unknown_user_tag_without_evidence_is_never_removed() -> None:
    from tagd.refine import LibraryStats, refine

    got = refine(["Lisbon 2023"], {"cat": 0.9}, mode="full", library=LibraryStats(), model_known={"cat"}, candidates=["cat"])
    assert "Lisbon 2023" in got.keywords and not got.removed


def test_modes_differ_only_in_what_happens_to_refuted_keywords() -> None:
    from tagd.refine import LibraryStats, refine

    library = LibraryStats.from_tag_sets([{"person"}] * 40 + [set()] * 40)
    library.add_scores([({"person": 0.9}, {"person"})] * 40 + [({"person": 0.01}, set())] * 40)
    outcomes = {mode: refine(["person"], {"person": 0.01}, mode=mode, library=library, model_known={"person"})
                for mode in ("add-only", "suggest", "full")}
    assert outcomes["add-only"].keywords == ["person"] and not outcomes["add-only"].removed
    assert outcomes["suggest"].keywords == ["person"] and outcomes["suggest"].suggested_removals == ["person"]
    assert outcomes["full"].keywords == [] and outcomes["full"].removed == ["person"]


def test_lowrank_is_an_optional_extra_source() -> None:
    """Without `lowrank` nothing changes; with it, a tag the completion supports can be added."""
    from tagd.refine import TUNED, LibraryStats, refine

    library = LibraryStats.from_tag_sets([{"dog", "ball"}] * 5 + [{"beach"}] * 20)
    plain = refine(["dog"], {"dog": 0.9}, mode="full", library=library, model_known={"dog"}, candidates=["dog"])
    same = refine(["dog"], {"dog": 0.9}, mode="full", library=library, model_known={"dog"}, candidates=["dog"],
                  lowrank=None)
    assert plain.keywords == same.keywords and plain.relevance == same.relevance
    got = refine(["dog"], {"dog": 0.9}, mode="full", library=library, model_known={"dog"}, candidates=["dog"],
                 lowrank={"ball": 0.9, "beach": 0.0, "dog": 0.1}, params=TUNED)
    assert "ball" in got.added and "beach" not in got.added
    assert "dog" in got.keywords  # by default the completion does not speak against the user's own tags


@settings(max_examples=200)
@given(user=st.lists(words, max_size=6, unique=True), model=tags)
def test_suggest_keeps_the_users_keywords_and_order_full_ranks_everything(user, model) -> None:
    from tagd.refine import LibraryStats, refine

    scores = {t.name: t.score for t in model}
    kwargs = dict(library=LibraryStats(), model_known=set(scores), candidates=[n for n, s in scores.items() if s > 0.5])
    suggest = refine(user, scores, mode="suggest", **kwargs)
    assert suggest.keywords[: len(user)] == user  # marked, never moved or dropped
    assert suggest.keywords[len(user):] == suggest.added
    full = refine(user, scores, mode="full", **kwargs)
    ranks = [full.relevance.get(k, 1.0) for k in full.keywords]
    assert ranks == sorted(ranks, reverse=True)
