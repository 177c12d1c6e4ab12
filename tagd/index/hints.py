"""Why a query found nothing, when a word of it is to blame: words no tag in the index is called.

Only consulted after a search came back empty. A word is unknown when it is neither a tag's name
nor a synonym (tag_alias: the vocabulary and every tag seen on a photo); the nearest known words
are offered (difflib), and a lowercase `or`/`and`/`not`, which the query language reads as a tag,
is pointed at the operator it was meant to be.
"""

from __future__ import annotations

import difflib
import sqlite3
from dataclasses import dataclass

from tagd.index.query_tree import OPERATORS, Node, Tag, leaves


@dataclass(frozen=True)
class Unknown:
    word: str  # as typed
    suggestions: list[str]  # the closest known words, best first
    operator: str | None = None  # "OR" for a typed "or"

    def __str__(self) -> str:
        text = f"no tag in the index is called '{self.word}'"
        if self.operator:
            return f"{text}; the operator is {self.operator}, in capitals"
        if self.suggestions:
            return f"{text}; did you mean {' or '.join(repr(s) for s in self.suggestions)}?"
        return text


def unknown_words(conn: sqlite3.Connection, node: Node, suggestions: int = 3) -> list[Unknown]:
    words = []
    for leaf, _ in leaves(node):
        if isinstance(leaf, Tag) and not leaf.prefix and leaf.key and leaf not in words:
            words.append(leaf)
    if not words:
        return []
    known = [key for (key,) in conn.execute("SELECT DISTINCT key FROM tag_alias")]
    known_set = set(known)
    found = []
    for tag in words:
        if tag.key in known_set:
            continue
        operator = tag.key.upper() if tag.key.upper() in OPERATORS else None
        close = [] if operator else difflib.get_close_matches(tag.key, known, n=suggestions, cutoff=0.6)
        found.append(Unknown(tag.name, close, operator))
    return found
