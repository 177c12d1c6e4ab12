"""Searches against a plain Python evaluator, on random libraries with random queries.

The evaluator below is written from the README's description of the language, not from the
index code: which words name which tags (names, then synonyms, then user tags), hierarchy,
states that count, qualifiers, filters, gone photos, ranking and order. Every random query must
give the same photos in the same order through the index's bitmap engine (under every plan it
can choose) and through the one-statement reference SQL in query.py.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import unicodedata
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from query_strategies import FACETS, query_trees
from tagd.index import search as engine
from tagd.index.db import Index, IndexedTag, PhotoRecord
from tagd.index.query import MAX_DEPTH, parse
from tagd.index.query_sql import search_sql
from tagd.index.query_tree import (
    SOURCES,
    STATES,
    STATUSES,
    And,
    Camera,
    Everything,
    Not,
    Or,
    PathGlob,
    ScoreRange,
    Source,
    State,
    Status,
    Tag,
    Taken,
    unparse,
)

VOCAB = [
    ("animal", [], ["creature"]),
    ("cat", ["animal"], ["kitty"]),
    ("dog", ["animal"], ["puppy", "hound"]),
    ("puppy dog", ["dog"], []),
    ("landscape", [], []),
    ("beach", ["landscape"], ["shore", "seaside"]),
    ("furniture", [], []),
    ("sofa", ["furniture"], ["couch", "settee"]),
    ("food", [], ["dish"]),
    ("dessert", ["food"], ["sweet"]),
    ("cake", ["dessert"], ["dessert", "sweet"]),  # a synonym that is another tag's name: the name wins
    ("vehicle", [], []),
    ("hot air balloon", ["vehicle"], ["balloon"]),
    ("Café", [], ["coffee shop"]),
]
# A different hierarchy for the same words: cat and dog move, a synonym changes hands.
VOCAB_2 = [
    ("animal", [], []),
    ("pet", ["animal"], ["kitty"]),
    ("cat", ["pet"], []),
    ("dog", ["pet"], ["hound", "couch"]),
    ("beach", [], ["shore"]),
    ("sofa", [], ["settee"]),
    ("vehicle", [], []),
]
USER_TAGS = [
    "Couch", "KITTY", "grandma", "Grandma", "'; DROP TABLE photo; --", "ünïcödé", "two  words", "OR",
    "status", "ca*t", 'quo"te', "-minus", "(paren)", "emoji 🐱", "x\udcff", "Dog", "holiday 2024",
]
WORDS = sorted({n for n, _, _ in VOCAB + VOCAB_2} | {s for _, _, ss in VOCAB + VOCAB_2 for s in ss} | set(USER_TAGS) | {"unknown", "pet"})
PATHS = [
    "/home/me/Pictures/2024/beach/a.jpg", "/home/me/Pictures/2024/b.jpg", "/home/me/Pictures/2023/c d.jpg",
    "/home/me/Pictures/[x]/y.jpg", "/home/me/ü/ß.jpg", "/home/me/*star*.jpg", "/home/me/q?.jpg",
    "/mnt/photos/2024/06/z.jpg", "/mnt/photos/x\udcff.jpg", "/mnt/photos/'; DROP TABLE photo; --.jpg",
    "/p/1.jpg", "/p/2.jpg", "/p/3.jpg", "/p/4.jpg", "/p/5.jpg", "/p/6.jpg", "/p/7.jpg", "/p/8.jpg",
]
CAMERAS = [None, "Google Pixel 7", "Canon EOS R6", "PIXEL 8", "Ünïcam", "'; DROP"]


def key(name: str) -> str:
    name = name.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return " ".join(unicodedata.normalize("NFC", name).casefold().split())


# -- the evaluator ------------------------------------------------------------------------------


@dataclass
class Library:
    vocab: list
    photos: dict  # path str -> PhotoRecord (insertion-ordered; ids follow)
    ids: dict  # path str -> photo id

    def tags_of(self, photo: PhotoRecord) -> list[IndexedTag]:
        seen, out = set(), []
        for t in photo.tags:  # the first of two tags with the same key wins
            if key(t.name) not in seen:
                seen.add(key(t.name))
                out.append(t)
        return out

    def words(self) -> dict[str, set[str]]:
        """word key -> the tag keys it names: vocabulary name, else synonyms, else a user tag."""
        names = {key(n) for n, _, _ in self.vocab} | {key(p) for _, ps, _ in self.vocab for p in ps}
        named = {n: {n} for n in names}
        for n, _, syns in self.vocab:
            for s in syns:
                if key(s) not in names and key(s) != key(n):
                    named.setdefault(key(s), set()).add(key(n))
        for photo in self.photos.values():
            for t in photo.tags:
                named.setdefault(key(t.name), {key(t.name)})
        return named

    def ancestors(self, tag: str) -> set[str]:
        names = {key(n) for n, _, _ in self.vocab} | {key(p) for _, ps, _ in self.vocab for p in ps}
        parents = {key(n): {key(p) for p in ps if key(p) != key(n)} for n, ps, _ in self.vocab}
        words = self.words()
        out, todo = set(), [tag]
        while todo:
            t = todo.pop()
            if t in out:
                continue
            out.add(t)
            if t in names:
                todo.extend(parents.get(t, ()))
            else:
                todo.extend(words.get(t, set()) - {t})
        return out

    def named_by(self, term: Tag) -> set[str]:
        words = self.words()
        if term.prefix:
            return {t for w, ts in words.items() if w.startswith(key(term.name)) for t in ts} | (
                {key(t.name) for p in self.photos.values() for t in p.tags} if not key(term.name) else set()
            )
        return words.get(key(term.name), set())

    def evaluate(self, node: object, suggestions: bool) -> list[tuple[str, float]]:
        """(path, score) of the matches, in `score` order."""
        gone_ok = _mentions_status(node)
        out = []
        for path, photo in self.photos.items():
            if photo.status == "gone" and not gone_ok:
                continue
            if self.matches(node, photo, suggestions):
                out.append((path, self.score(node, photo, suggestions)))
        out.sort(key=lambda r: (-r[1], -self.ids[r[0]]))
        return out

    def tag_matches(self, term: Tag, photo: PhotoRecord, suggestions: bool) -> list[float]:
        states = {term.state} if term.state else {"kept", "added"} | ({"suggested", "suggested-removal"} if suggestions else set())
        wanted = self.named_by(term)
        return [
            t.score
            for t in self.tags_of(photo)
            if t.state in states
            and (term.source is None or t.source == term.source)
            and (term.score is None or term.score.contains(t.score))
            and self.ancestors(key(t.name)) & wanted
        ]

    def matches(self, node: object, photo: PhotoRecord, suggestions: bool) -> bool:
        if isinstance(node, Everything):
            return True
        if isinstance(node, Not):
            return not self.matches(node.child, photo, suggestions)
        if isinstance(node, And):
            return all(self.matches(c, photo, suggestions) for c in node.children)
        if isinstance(node, Or):
            return any(self.matches(c, photo, suggestions) for c in node.children)
        if isinstance(node, Tag):
            return bool(self.tag_matches(node, photo, suggestions))
        if isinstance(node, Taken):
            if photo.taken is None:
                return False
            d = photo.taken.date()
            return (node.lo is None or d >= node.lo) and (node.hi is None or d < node.hi)
        if isinstance(node, PathGlob):
            body = node.value.rstrip("/") or "/"
            if not body.startswith("/"):
                body = "*/" + body
            regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in body)
            path = str(photo.path)
            return bool(re.fullmatch(regex, path, re.S) or re.fullmatch(regex + "/.*", path, re.S))
        if isinstance(node, Camera):
            return photo.camera is not None and key(node.value) in key(photo.camera)
        if isinstance(node, Status):
            return photo.status == node.value
        if isinstance(node, Source):
            states = {"kept", "added"} | ({"suggested", "suggested-removal"} if suggestions else set())
            return any(t.source == node.value and t.state in states for t in self.tags_of(photo))
        if isinstance(node, State):
            return any(t.state == node.value for t in self.tags_of(photo))
        raise TypeError(node)

    def score(self, node: object, photo: PhotoRecord, suggestions: bool) -> float:
        best = 0.0
        for term in _positive_tags(node):
            best = max([best, *self.tag_matches(term, photo, suggestions)])
        return best


def _positive_tags(node: object, positive: bool = True) -> list[Tag]:
    if isinstance(node, Not):
        return _positive_tags(node.child, not positive)
    if isinstance(node, (And, Or)):
        return [t for c in node.children for t in _positive_tags(c, positive)]
    return [node] if positive and isinstance(node, Tag) else []


def _mentions_status(node: object) -> bool:
    if isinstance(node, Not):
        return _mentions_status(node.child)
    if isinstance(node, (And, Or)):
        return any(_mentions_status(c) for c in node.children)
    return isinstance(node, Status)


def ordered(lib: Library, hits: list[tuple[str, float]], sort: str) -> list[str]:
    if sort == "score":
        return [p for p, _ in hits]
    if sort == "path":
        return sorted((p for p, _ in hits), key=lambda p: p.encode("utf-8", "surrogateescape"))
    def taken(p: str) -> str:
        t = lib.photos[p].taken
        return t.isoformat() if t else ""
    return sorted((p for p, _ in hits), key=lambda p: (taken(p), lib.ids[p]), reverse=True)


# -- random libraries and queries ---------------------------------------------------------------

SCORES = st.sampled_from([0.0, 0.1, 0.5, 0.8, 0.95, 1.0]) | st.floats(0, 1, allow_nan=False)
TIMES = st.datetimes(datetime(2021, 11, 1), datetime(2024, 3, 1)).map(lambda d: d.replace(microsecond=0))


@st.composite
def records(draw: st.DrawFn, path: str) -> PhotoRecord:
    status = draw(st.sampled_from(STATUSES))
    return PhotoRecord(
        path=Path(path),
        content_hash=None,
        size=1,
        mtime_ns=1,
        taken=draw(st.none() | TIMES),
        camera=draw(st.sampled_from(CAMERAS)),
        status=status,
        error="broken" if status == "failed" else None,
        tags=draw(st.lists(
            st.builds(IndexedTag, st.sampled_from(WORDS), SCORES, st.sampled_from(SOURCES), st.sampled_from(STATES)),
            max_size=6,
        )),
    )


@st.composite
def histories(draw: st.DrawFn) -> list[tuple]:
    """Steps that build a library: ("vocab", v), ("upsert", [records]), ("gone"|"remove", path), ("move", a, b)."""
    steps: list[tuple] = [("vocab", VOCAB)]
    paths = draw(st.lists(st.sampled_from(PATHS), min_size=1, max_size=14, unique=True))
    steps.append(("upsert", [draw(records(p)) for p in paths]))
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["upsert", "gone", "remove", "move", "vocab"]))
        if kind == "upsert":
            again = draw(st.lists(st.sampled_from(PATHS), min_size=1, max_size=4, unique=True))
            steps.append(("upsert", [draw(records(p)) for p in again]))
        elif kind == "vocab":
            steps.append(("vocab", draw(st.sampled_from([VOCAB, VOCAB_2]))))
        elif kind == "move":
            steps.append(("move", draw(st.sampled_from(PATHS)), draw(st.sampled_from(PATHS))))
        else:
            steps.append((kind, draw(st.sampled_from(PATHS))))
    return steps


def tag_terms() -> st.SearchStrategy[Tag]:
    names = st.sampled_from(WORDS) | st.sampled_from(WORDS).map(lambda w: w[: max(1, len(w) // 2)])
    return st.builds(
        Tag,
        names,
        st.booleans(),
        st.none() | st.sampled_from([ScoreRange(lo=0.5, lo_inclusive=False), ScoreRange(lo=0.8), ScoreRange(hi=0.5), ScoreRange(0.1, True, 0.9, True)]),
        st.none() | st.sampled_from(SOURCES),
        st.none() | st.sampled_from(STATES),
    ) | st.just(Tag("", prefix=True))


@st.composite
def date_terms(draw: st.DrawFn) -> Taken:
    days = st.dates(date(2021, 10, 1), date(2024, 4, 1))
    kind = draw(st.sampled_from(["range", "lo", "hi", "month", "year"]))
    if kind == "month":
        d = draw(days).replace(day=1)
        return Taken(d, (d + timedelta(days=32)).replace(day=1))
    if kind == "year":
        y = draw(st.integers(2021, 2024))
        return Taken(date(y, 1, 1), date(y + 1, 1, 1))
    lo, hi = sorted([draw(days), draw(days) + timedelta(days=1)])
    if lo == hi:
        hi += timedelta(days=1)
    return Taken(lo if kind != "hi" else None, hi if kind != "lo" else None)


LEAVES = st.one_of(
    tag_terms(),
    tag_terms(),
    date_terms(),
    st.sampled_from(["Pictures/2024/*", "/home/me", "2024", "[x]", "*.jpg", "q?.jpg", "ü", "*star*", "/mnt/photos/x\udcff.jpg", "p/?.jpg"]).map(PathGlob),
    st.sampled_from(["pixel", "PIXEL 8", "canon eos", "ünï", "'; drop"]).map(Camera),
    *FACETS,
)


QUERIES = query_trees(LEAVES, max_leaves=6) | st.just(Everything())

# Each plan forces one branch of every choice the engine makes, so all of them get checked.
PLANS = [
    {},
    {"RESTRICT_MAX": 0, "_FETCH_US": 1e9},  # never restrict leaf SQL; merge score streams; scan ordered indexes
    {"RESTRICT_MAX": 10**9, "_STREAM_US": 1e9, "_SCAN_US": 1e9},  # always restrict; fetch and sort here
]


def replay(index: Index, lib: Library, steps: list[tuple]) -> None:
    for step in steps:
        if step[0] == "vocab":
            index.set_vocabulary(step[1])
            lib.vocab = step[1]
        elif step[0] == "upsert":
            index.upsert_photos(step[1])
            for rec in step[1]:
                lib.photos[str(rec.path)] = rec
        elif step[0] == "gone":
            index.mark_gone(Path(step[1]))
            if step[1] in lib.photos:
                lib.photos[step[1]] = replace(lib.photos[step[1]], status="gone")
        elif step[0] == "remove":
            index.remove(Path(step[1]))
            lib.photos.pop(step[1], None)
        elif step[0] == "move":
            old, new = step[1], step[2]
            if old not in lib.photos:
                continue
            index.move(Path(old), Path(new))
            if old != new:
                lib.photos.pop(new, None)
                lib.photos[new] = replace(lib.photos.pop(old), path=Path(new))
    lib.ids = {path: pid for pid, path in index.read(lambda c: c.execute("SELECT id, path FROM photo").fetchall())}
    assert set(lib.ids) == set(lib.photos)


def check(index: Index, lib: Library, query: object, sort: str, limit: int | None, suggestions: bool) -> None:
    text = unparse(query)
    assert parse(text) == query
    expected = lib.evaluate(query, suggestions)
    want = ordered(lib, expected, sort)
    want = want[:limit] if limit is not None else want
    scores = dict(expected)

    hits = index.search(text, sort=sort, limit=limit, suggestions=suggestions)
    got = [str(h.path) for h in hits]
    assert got == want, (text, sort, limit, suggestions)
    for h in hits:
        assert h.score == scores[str(h.path)], (text, str(h.path))
        t = lib.photos[str(h.path)].taken
        assert h.taken == t
    assert index.count(text, suggestions=suggestions) == len(expected), text

    sql = search_sql(query, sort=sort, limit=limit, suggestions=suggestions, dialect=index.dialect)
    rows = index.read(lambda c: c.execute(sql.text, sql.params).fetchall())
    assert [r[1] for r in rows] == want, ("reference SQL", text)
    assert [r[3] for r in rows] == [scores[p] for p in want]


@given(
    steps=histories(),
    queries=st.lists(st.tuples(QUERIES, st.sampled_from(["score", "taken", "path"]), st.sampled_from([None, 1, 3]), st.booleans()), min_size=1, max_size=12),
    plan=st.sampled_from(PLANS),
)
@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
def test_random_queries_match_the_evaluator(index_backend, steps: list[tuple], queries: list[tuple], plan: dict) -> None:
    """On both backends: the same random libraries, the same queries, the same answers."""
    with Index(index_backend()) as index, ExitStack() as patches:
        for name, value in plan.items():
            patches.enter_context(mock.patch.object(engine, name, value))
        lib = Library(VOCAB, {}, {})
        replay(index, lib, steps)
        for query, sort, limit, suggestions in queries:
            check(index, lib, query, sort, limit, suggestions)


def test_bitmaps_equal_a_rebuild_after_random_updates(index_backend) -> None:
    """The incremental bitmap edits leave exactly what a rebuild from the rows would."""
    from tagd.index import bitmaps, tags

    @given(steps=histories())
    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    def run(steps: list[tuple]) -> None:
        with Index(index_backend()) as index:
            replay(index, Library(VOCAB, {}, {}), steps)
            snapshot = "SELECT kind, key, chunk, bits FROM bitmap ORDER BY kind, key, chunk"
            incremental = index.read(lambda c: c.execute(snapshot).fetchall())

            def rebuild(conn: sqlite3.Connection) -> None:
                cache = tags.TagCache()
                tags.load_cache(conn, cache)
                bitmaps.rebuild(conn, cache.ancestors)

            index.write(rebuild)
            assert index.read(lambda c: c.execute(snapshot).fetchall()) == incremental

    run()


def test_known_answers(index_backend) -> None:
    """A few hand-checked cases, readable without the evaluator."""
    with Index(index_backend()) as index:
        index.set_vocabulary(VOCAB)
        T = IndexedTag
        index.upsert_photos([
            PhotoRecord(Path("/p/cat.jpg"), None, 1, 1, taken=datetime(2024, 6, 15, 10), tags=[T("cat", 0.9, "model", "kept")]),
            PhotoRecord(Path("/p/dog.jpg"), None, 1, 1, taken=datetime(2024, 8, 31, 23, 59), tags=[T("dog", 0.7, "model", "kept"), T("beach", 0.4, "model", "suggested")]),
            PhotoRecord(Path("/p/couch.jpg"), None, 1, 1, tags=[T("Couch", 1.0, "user", "added")]),
            PhotoRecord(Path("/p/sofa.jpg"), None, 1, 1, camera="Google Pixel 7", tags=[T("sofa", 0.6, "model", "kept"), T("cat", 0.3, "model", "removed")]),
            PhotoRecord(Path("/p/bad.jpg"), None, 1, 1, status="failed", error="truncated"),
        ])

        def names(q: str, **kw: object) -> list[str]:
            return [h.path.name for h in index.search(q, **kw)]

        assert names("animal") == ["cat.jpg", "dog.jpg"]
        assert names("puppy") == ["dog.jpg"]  # a synonym
        assert names("couch") == ["couch.jpg", "sofa.jpg"]  # synonym of sofa + the user's own "Couch"
        assert names("furniture") == ["couch.jpg", "sofa.jpg"]  # the user's "Couch" hangs under sofa
        assert names("beach") == []
        assert names("beach", suggestions=True) == ["dog.jpg"]
        assert names("cat") == ["cat.jpg"]  # removed does not count
        assert names("cat:removed") == ["sofa.jpg"]
        assert names("animal -cat") == ["dog.jpg"]
        assert names("taken:2024-06..2024-08", sort="taken") == ["dog.jpg", "cat.jpg"]
        assert names("taken:2024-08-31") == ["dog.jpg"]
        assert names("-taken:2024") == names("-taken:2024-01..2024-12")
        assert sorted(names("-taken:2024")) == ["bad.jpg", "couch.jpg", "sofa.jpg"]
        assert names("camera:pixel") == ["sofa.jpg"]
        assert names("status:failed") == ["bad.jpg"]
        assert names("source:user") == ["couch.jpg"]
        # cat; couch (-> sofa, and the user's Couch); creature (-> animal: cat, dog); not "removed" cat
        assert names("c*", sort="path") == ["cat.jpg", "couch.jpg", "dog.jpg", "sofa.jpg"]
        assert names("-tag:*") == ["bad.jpg"]
        assert names("dog:>0.8") == [] and names("dog:>=0.7") == ["dog.jpg"]
        assert [(h.path.name, h.score) for h in index.search("cat OR sofa")] == [("couch.jpg", 1.0), ("cat.jpg", 0.9), ("sofa.jpg", 0.6)]
        index.mark_gone(Path("/p/cat.jpg"))
        assert names("animal") == ["dog.jpg"]
        assert names("animal status:gone") == ["cat.jpg"]


# -- deep and long queries through `tagd search` -----------------------------------------------


def _tagd_search(index: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tagd", "--index", str(index), "search", *args],
                          capture_output=True, text=True, timeout=120, env=os.environ.copy())


def _dog_index(folder: Path) -> Path:
    path = folder / "index.sqlite3"
    with Index(path) as index:
        index.set_vocabulary(VOCAB)
        index.upsert_photos([PhotoRecord(Path("/p/dog.jpg"), None, 1, 1, tags=[IndexedTag("dog", 0.9, "model", "kept")])])
    return path


def test_too_deeply_nested_query_exits_2_with_the_column(tmp_path: Path) -> None:
    index = _dog_index(tmp_path)
    for query in ("(" * 300 + "dog", "-" * 1000 + "dog"):
        proc = _tagd_search(index, "--", query)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr == f"tagd search: col 101: query nested too deeply (more than {MAX_DEPTH} levels)\n"
        assert proc.stdout == ""


def test_nested_and_long_queries_still_search(tmp_path: Path) -> None:
    index = _dog_index(tmp_path)
    nested = "(cat OR (" * 25 + "dog" + "))" * 25  # 50 levels
    long_or = " OR ".join([f"t{i}" for i in range(4999)] + ["dog"])
    for query in (nested, "-" * 50 + "dog", long_or, long_or.replace("dog", "dog:>0.5")):
        proc = _tagd_search(index, "--", query)
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, "/p/dog.jpg\n", ""), query[:40]
    proc = _tagd_search(index, "--count", "--", " ".join(f"-t{i}" for i in range(5000)) + " dog")
    assert (proc.returncode, proc.stdout) == (0, "1\n"), proc.stderr


def test_deepest_queries_the_parser_allows_run_in_the_engine() -> None:
    """The nesting limit keeps every reader of the tree, not just the parser, off the recursion limit."""
    deepest = (
        "(a b OR dog " * MAX_DEPTH + "dog" + ")" * MAX_DEPTH,  # an OR and an AND per level
        "-(a b OR c " * (MAX_DEPTH // 2) + "dog" + ")" * (MAX_DEPTH // 2),
        "-" * (MAX_DEPTH // 2 * 2) + "dog",
    )
    with tempfile.TemporaryDirectory() as tmp, Index(_dog_index(Path(tmp)), readonly=True) as index:
        for query in deepest:
            for sort in ("score", "path", "taken"):
                assert [str(h.path) for h in index.search(query, sort=sort)] == ["/p/dog.jpg"], (query[:40], sort)
            assert index.count(query) == 1
