"""Tag refinement: the photo's keywords + the model's tags -> the final, ranked keyword list.

Pure functions, no I/O, so they can be tested exhaustively. This is the `add-only` mode:
the user's own keywords are never removed, renamed or reordered; tagd adds its confident
tags after them, best first, and replaces only its own earlier additions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence


@dataclass(frozen=True)
class MachineTag:
    name: str
    score: float


@dataclass
class Refinement:
    keywords: list[str]  # final list: the user's keywords in their order, then tagd's by score
    added: list[str]  # keywords tagd contributes (not the user's)
    rejected: list[str]  # tagd's additions the user deleted: never added again
    machine_tags: dict[str, float] = field(default_factory=dict)  # score of every machine tag in `keywords`
    removed: list[str] = field(default_factory=list)

    @property
    def user_keywords(self) -> list[str]:
        added = set(self.added)
        return [k for k in self.keywords if k not in added]


def refine_add_only(
    current: Sequence[str],
    model_tags: Iterable[MachineTag],
    *,
    previously_added: Sequence[str] = (),
    previously_written: Sequence[str] = (),
    previously_rejected: Sequence[str] = (),
) -> Refinement:
    """Merge the model's tags into the photo's keywords without touching the user's.

    `previously_*` come from tagd's provenance in the file: what tagd added and wrote last
    time, and what the user already rejected. A keyword tagd added that is gone now was
    deleted by the user: it is remembered as rejected and never added again.
    """
    added_before = {k.casefold() for k in previously_added}
    current_folded = {k.casefold() for k in current}
    written_folded = {k.casefold() for k in previously_written}
    rejected = list(previously_rejected)
    rejected_folded = {k.casefold() for k in rejected}
    for keyword in previously_added:
        folded = keyword.casefold()
        if folded in written_folded and folded not in current_folded and folded not in rejected_folded:
            rejected.append(keyword)
            rejected_folded.add(folded)

    # The user's keywords: everything present that tagd did not put there.
    user = [k for k in current if k.casefold() not in added_before]
    user_by_fold = {k.casefold(): k for k in reversed(user)}
    taken = set(user_by_fold)
    ranked = sorted(model_tags, key=lambda t: (-t.score, t.name))
    additions: list[str] = []
    scores: dict[str, float] = {}
    for tag in ranked:
        folded = tag.name.casefold()
        if folded in rejected_folded:
            continue
        if folded in taken:
            if folded in user_by_fold:
                # The user already has it (perhaps spelt "Cat"): keep theirs, record the score.
                scores.setdefault(user_by_fold[folded], tag.score)
            continue
        taken.add(folded)
        additions.append(tag.name)
        scores[tag.name] = tag.score
    return Refinement(keywords=[*user, *additions], added=additions, rejected=rejected, machine_tags=scores)
