"""Tag names in the index: the vocabulary, its hierarchy and synonyms, and what a typed word means.

A word names (tag_alias):
  1. the vocabulary tag of that name, else
  2. the vocabulary tags that list it as a synonym ("couch" -> sofa), else
  3. a tag of that name that is not in the vocabulary (a user's own keyword).
A tag's ancestors (tag_closure) are itself plus, transitively, its vocabulary parents; a tag outside
the vocabulary whose name is a synonym hangs under the tags the synonym names, so a user's "couch"
is found by `sofa` and `furniture` too. Searching for a tag finds every photo with the tag or any
descendant, so `animal` finds photos tagged only `cat`.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from tagd.index.query_tree import tag_key


@dataclass
class TagCache:
    """The writer's view of the tag tables; reloaded when `gen` (meta tags_gen) moves."""

    gen: int = -1
    ids: dict[str, int] = field(default_factory=dict)  # key -> id
    ancestors: dict[int, tuple[int, ...]] = field(default_factory=dict)


def tags_gen(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = 'tags_gen'").fetchone()
    return int(row[0]) if row else 0


def bump(conn: sqlite3.Connection, counter: str) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, 1) ON CONFLICT (key) DO UPDATE SET value = value + 1", (counter,)
    )


def load_cache(conn: sqlite3.Connection, cache: TagCache) -> None:
    gen = tags_gen(conn)
    if gen == cache.gen:
        return
    cache.ids = {key: tid for tid, key in conn.execute("SELECT id, key FROM tag")}
    ancestors: dict[int, list[int]] = {}
    for anc, desc in conn.execute("SELECT ancestor, descendant FROM tag_closure"):
        ancestors.setdefault(desc, []).append(anc)
    cache.ancestors = {tid: tuple(sorted(a)) for tid, a in ancestors.items()}
    cache.gen = gen


def ensure_tag(conn: sqlite3.Connection, cache: TagCache, key: str, name: str) -> int:
    """The id of a tag, creating it (outside the vocabulary) with its alias and closure rows."""
    tid = cache.ids.get(key)
    if tid is not None:
        return tid
    tid = conn.execute("INSERT INTO tag (key, name) VALUES (?, ?) RETURNING id", (key, name)).fetchone()[0]
    named = [row[0] for row in conn.execute("SELECT tag_id FROM tag_alias WHERE key = ?", (key,))]
    if not named:
        conn.execute("INSERT INTO tag_alias (key, tag_id) VALUES (?, ?)", (key, tid))
    ancestors = {tid}
    for target in named:
        ancestors.update(cache.ancestors.get(target, (target,)))
    conn.executemany("INSERT INTO tag_closure (ancestor, descendant) VALUES (?, ?)", [(a, tid) for a in ancestors])
    cache.ids[key] = tid
    cache.ancestors[tid] = tuple(sorted(ancestors))
    # Others' caches must see the new tag; ours already does.
    bump(conn, "tags_gen")
    cache.gen = tags_gen(conn)
    return tid


VocabEntry = tuple[str, Sequence[str], Sequence[str]]


def vocabulary_hash(entries: Sequence[VocabEntry]) -> str:
    import hashlib
    import json

    canonical = sorted((tag_key(n), sorted(map(tag_key, p)), sorted(map(tag_key, s))) for n, p, s in entries)
    return hashlib.sha256(json.dumps(canonical, ensure_ascii=False).encode()).hexdigest()


def store_vocabulary(conn: sqlite3.Connection, entries: Iterable[VocabEntry]) -> bool:
    """Replace the vocabulary; False (and nothing written) when it is the one already stored."""
    entries = [(str(n), tuple(p), tuple(s)) for n, p, s in entries]
    digest = vocabulary_hash(entries)
    row = conn.execute("SELECT value FROM meta WHERE key = 'vocabulary_sha256'").fetchone()
    if row and row[0] == digest:
        return False
    names: dict[str, str] = {}
    for name, parents, _ in entries:
        names.setdefault(tag_key(name), name)
        for parent in parents:  # a parent left out of the list is still a vocabulary tag
            names.setdefault(tag_key(parent), parent)
    names = {k: v for k, v in names.items() if k}
    conn.execute("UPDATE tag SET in_vocab = 0")
    conn.executemany(
        "INSERT INTO tag (key, name, in_vocab) VALUES (?, ?, 1) "
        "ON CONFLICT (key) DO UPDATE SET in_vocab = 1, name = excluded.name",
        list(names.items()),
    )
    ids = {key: tid for tid, key in conn.execute("SELECT id, key FROM tag")}
    conn.execute("DELETE FROM tag_parent")
    conn.execute("DELETE FROM tag_synonym")
    parent_rows: set[tuple[int, int]] = set()
    synonym_rows: set[tuple[int, str]] = set()
    for name, parents, synonyms in entries:
        key = tag_key(name)
        if not key:
            continue
        parent_rows.update((ids[key], ids[tag_key(p)]) for p in parents if tag_key(p) and tag_key(p) != key)
        synonym_rows.update((ids[key], tag_key(s)) for s in synonyms if tag_key(s) and tag_key(s) != key)
    conn.executemany("INSERT INTO tag_parent (tag_id, parent_id) VALUES (?, ?)", sorted(parent_rows))
    conn.executemany("INSERT INTO tag_synonym (tag_id, key) VALUES (?, ?)", sorted(synonym_rows))
    rebuild(conn)
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('vocabulary_sha256', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (digest,),
    )
    bump(conn, "tags_gen")
    return True


def rebuild(conn: sqlite3.Connection) -> None:
    """Recompute tag_alias and tag_closure from tag, tag_parent and tag_synonym."""
    tags = {tid: (key, bool(v)) for tid, key, v in conn.execute("SELECT id, key, in_vocab FROM tag")}
    vocab_by_key = {key: tid for tid, (key, v) in tags.items() if v}
    by_synonym: dict[str, set[int]] = {}
    for tid, key in conn.execute("SELECT tag_id, key FROM tag_synonym"):
        by_synonym.setdefault(key, set()).add(tid)
    aliases: dict[str, set[int]] = {key: {tid} for key, tid in vocab_by_key.items()}
    for key, tids in by_synonym.items():
        aliases.setdefault(key, set(tids))
    for tid, (key, in_vocab) in tags.items():
        if not in_vocab:
            aliases.setdefault(key, {tid})
    parents: dict[int, set[int]] = {tid: set() for tid in tags}
    for tid, parent in conn.execute("SELECT tag_id, parent_id FROM tag_parent"):
        parents[tid].add(parent)
    for tid, (key, in_vocab) in tags.items():
        if not in_vocab:
            parents[tid] |= aliases.get(key, set()) - {tid}
    closure: dict[int, set[int]] = {}

    def ancestors_of(tid: int, visiting: frozenset[int] = frozenset()) -> set[int]:
        if tid in closure:
            return closure[tid]
        found = {tid}
        for parent in parents[tid]:
            if parent not in visiting:  # a cycle in a hand-made vocabulary must not hang us
                found |= ancestors_of(parent, visiting | {tid})
        if not visiting:
            closure[tid] = found
        return found

    conn.execute("DELETE FROM tag_alias")
    conn.execute("DELETE FROM tag_closure")
    conn.executemany(
        "INSERT INTO tag_alias (key, tag_id) VALUES (?, ?)",
        sorted((key, tid) for key, tids in aliases.items() for tid in tids),
    )
    conn.executemany(
        "INSERT INTO tag_closure (ancestor, descendant) VALUES (?, ?)",
        sorted((anc, tid) for tid in tags for anc in ancestors_of(tid)),
    )
