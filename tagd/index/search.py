"""Answering a parsed query from one read snapshot: bitmaps for the set, SQL for the rows.

A query is evaluated to a Python int whose bit i is set when photo id i matches (see bitmaps.py).
Leaves that have a stored bitmap (plain tags, status, source, state, whole months and years)
cost a few small reads; the rest (a tag with a score/source/state qualifier, path, camera, the
part-months of a date range) run their SQL from query.py, restricted to the photos still in play
when the set so far is small. `where_sql`/`search_sql` in query.py define the same result in one
SQL statement; the tests check both against a plain Python evaluator.

Ordering the first N of a large result reads an ordered index until N members are found
(`path`, `taken`), or merges each query tag's score-ordered index (`score`); a small result is
fetched whole and sorted here.

Over 400 lines: one algorithm, the evaluation of a query tree over bitmaps with its cost-based
choice between scoring strategies; its parts are only read together.
"""

from __future__ import annotations

import heapq
import re
import sqlite3
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Generator, Iterable, Iterator

from tagd.index import bitmaps
from tagd.index.query_sql import Sql, leaf_photo_sql, resolve_sql, tag_row_sql
from tagd.index.query_tree import (
    SOURCE_CODE,
    SOURCES,
    STATE_CODE,
    STATUSES,
    And,
    Camera,
    Everything,
    Node,
    Not,
    Or,
    PathGlob,
    Source,
    State,
    Status,
    Tag,
    Taken,
    mentions_status,
    ranking_tags,
)

RESTRICT_MAX = 20_000  # run a leaf's SQL only over the candidates when there are at most this many


@dataclass(frozen=True)
class SearchHit:
    path: Path
    score: float  # the best score among the query's tags (0 when it names none)
    taken: datetime | None


def run_count(conn: sqlite3.Connection, node: Node, *, suggestions: bool = False) -> int:
    return _Evaluator(conn, suggestions).result(node).bit_count()


def run_search(
    conn: sqlite3.Connection, node: Node, *, sort: str = "score", limit: int | None = None, suggestions: bool = False
) -> list[SearchHit]:
    ev = _Evaluator(conn, suggestions)
    result = ev.result(node)
    if limit == 0 or not result:
        return []
    if sort == "score":
        ranked = _by_score(ev, node, result, limit)
        rows = _rows(conn, [pid for _, pid in ranked])
        return [SearchHit(Path(rows[pid][0]), score, _dt(rows[pid][1])) for score, pid in ranked]
    if sort in ("path", "taken"):
        ordered = _ordered(ev, result, sort, limit)
        scores = _scores(ev, ranking_tags(node), [pid for pid, _, _ in ordered])
        return [SearchHit(Path(path), scores[pid], _dt(taken)) for pid, path, taken in ordered]
    raise ValueError(f"unknown sort {sort!r}")


class _Evaluator:
    def __init__(self, conn: sqlite3.Connection, suggestions: bool) -> None:
        self.conn = conn
        self.suggestions = suggestions
        self.tag_kind = bitmaps.TAG_S if suggestions else bitmaps.TAG
        self.source_kind = bitmaps.SOURCE_S if suggestions else bitmaps.SOURCE
        self._all: int | None = None

    @property
    def everything(self) -> int:
        """Every photo in the index, whatever its status."""
        if self._all is None:
            self._all = bitmaps.load(self.conn, bitmaps.STATUS, range(len(STATUSES)))
        return self._all

    def result(self, node: Node) -> int:
        scope = self.everything
        if not mentions_status(node):
            scope &= ~bitmaps.load(self.conn, bitmaps.STATUS, [bitmaps.STATUS_CODE["gone"]])
        return self.eval(node, scope) & scope

    def eval(self, node: Node, within: int) -> int:
        """A bitmap that agrees with the query on every photo in `within` (elsewhere: anything)."""
        if not within:
            return 0
        if isinstance(node, And):
            acc = within
            for child in sorted(node.children, key=_cost):
                acc &= self.eval(child, acc)
                if not acc:
                    break
            return acc
        if isinstance(node, Or):
            acc = 0
            for child in sorted(node.children, key=_cost):
                acc |= self.eval(child, within & ~acc)
            return acc
        if isinstance(node, Not):
            return within & ~self.eval(node.child, within)
        if isinstance(node, Everything):
            return within
        if isinstance(node, Tag):
            if node.qualified:
                row = tag_row_sql(node, self.suggestions)
                return self._ids(f"SELECT DISTINCT pt.photo_id FROM photo_tag pt WHERE {row.text}", row.params, "pt.photo_id", within)
            return self.tag_bitmap(node)
        if isinstance(node, Status):
            return bitmaps.load(self.conn, bitmaps.STATUS, [bitmaps.STATUS_CODE[node.value]])
        if isinstance(node, Source):
            return bitmaps.load(self.conn, self.source_kind, [SOURCE_CODE[node.value]])
        if isinstance(node, State):
            return bitmaps.load(self.conn, bitmaps.STATE, [STATE_CODE[node.value]])
        if isinstance(node, Taken):
            return self._taken(node, within)
        if isinstance(node, (PathGlob, Camera)):
            cond = leaf_photo_sql(node, self.suggestions, getattr(self.conn, "dialect", "sqlite"))
            return self._ids(f"SELECT p.id FROM photo p WHERE {cond.text}", cond.params, "p.id", within)
        raise TypeError(node)

    def tag_bitmap(self, tag: Tag) -> int:
        """Photos with the tag (or a descendant) in a state that counts, ignoring qualifiers."""
        if tag.prefix and not tag.key:
            # "any tag": every photo with some tag from some source
            return bitmaps.load(self.conn, self.source_kind, range(len(SOURCES)))
        r = resolve_sql(tag)
        return bitmaps.load(self.conn, self.tag_kind, [row[0] for row in self.conn.execute(r.text, r.params)])

    def _ids(self, sql: str, params: tuple[object, ...], id_column: str, within: int) -> int:
        if within.bit_count() <= RESTRICT_MAX:
            sql += f" AND {id_column} IN (SELECT value FROM json_each(?))"
            params = (*params, _json_ids(bitmaps.to_ids(within)))
        return bitmaps.from_ids(row[0] for row in self.conn.execute(sql, params))

    def _taken(self, node: Taken, within: int) -> int:
        # Whole years and months come from their bitmaps; part-months at either end from SQL.
        lo, hi = node.lo, node.hi
        lo_m = 0 if lo is None else _month(lo) + (lo.day != 1)  # first whole month
        hi_m = 10_000 * 12 if hi is None else _month(hi)  # first month not wholly inside
        if lo_m >= hi_m or lo_m >= 10_000 * 12:
            return self._taken_sql(lo, hi, within)
        acc = 0
        if lo is not None and lo.day != 1:
            acc |= self._taken_sql(lo, _month_start(lo_m), within)
        if hi is not None and hi.day != 1:
            acc |= self._taken_sql(_month_start(hi_m), hi, within)
        first_year, end_year = -(-lo_m // 12), hi_m // 12
        if first_year < end_year:
            acc |= bitmaps.load_range(self.conn, bitmaps.YEAR, first_year, end_year)
            acc |= bitmaps.load_range(self.conn, bitmaps.MONTH, _month_key(lo_m), _month_key(first_year * 12))
            acc |= bitmaps.load_range(self.conn, bitmaps.MONTH, _month_key(end_year * 12), _month_key(hi_m))
        else:
            acc |= bitmaps.load_range(self.conn, bitmaps.MONTH, _month_key(lo_m), _month_key(hi_m))
        return acc

    def _taken_sql(self, lo: date | None, hi: date | None, within: int) -> int:
        cond = leaf_photo_sql(Taken(lo, hi), self.suggestions)
        return self._ids(f"SELECT p.id FROM photo p WHERE {cond.text}", cond.params, "p.id", within)


def _cost(node: Node) -> int:
    """Cheap-first order for AND/OR children: bitmaps, then combinations, then SQL scans."""
    if isinstance(node, (Status, Source, State, Taken, Everything)) or (isinstance(node, Tag) and not node.qualified):
        return 0
    if isinstance(node, (And, Or, Not)):
        return 1
    return 2


def _month(d: date) -> int:
    return d.year * 12 + d.month - 1


def _month_start(m: int) -> date:
    return date(m // 12, m % 12 + 1, 1)


def _month_key(m: int) -> int:
    return (m // 12) * 100 + m % 12 + 1


def _json_ids(ids: Iterable[int]) -> str:
    return "[" + ",".join(map(str, ids)) + "]"


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


_NONZERO = re.compile(rb"[^\x00]+")
_HIGH_FIRST = [tuple(j for j in range(7, -1, -1) if b >> j & 1) for b in range(256)]


def ids_descending(bits: int) -> Iterator[int]:
    """Set bits from the highest down, lazily: the first few of a huge set cost little."""
    data = bits.to_bytes((bits.bit_length() + 7) // 8, "little")[::-1]
    top = len(data) - 1
    for m in _NONZERO.finditer(data):
        for offset, byte in enumerate(m.group()):
            base = (top - m.start() - offset) * 8
            for j in _HIGH_FIRST[byte]:
                yield base + j


def _rows(conn: sqlite3.Connection, ids: list[int]) -> dict[int, tuple[str, str | None]]:
    out: dict[int, tuple[str, str | None]] = {}
    for start in range(0, len(ids), 100_000):
        part = _json_ids(ids[start:start + 100_000])
        for pid, path, taken in conn.execute(
            "SELECT id, path, taken FROM photo WHERE id IN (SELECT value FROM json_each(?))", (part,)
        ):
            out[pid] = (path, taken)
    return out


# -- ordering ----------------------------------------------------------------------------------


# Rough per-row costs (µs, measured on the 2-core development box) for choosing a plan.
_FETCH_US = 1.5  # fetch one photo's rows by id through json_each, per query tag
_SCAN_US = 0.7  # read one row of an ordered index and test membership
_STREAM_US = 1.0  # one row of a score-ordered stream through heapq.merge
_STREAM_OPEN_US = 40.0  # open one stream


def _ordered(ev: _Evaluator, result: int, sort: str, limit: int | None) -> list[tuple[int, str, str | None]]:
    """(id, path, taken) of the result in `path` order or `taken` order (newest first, undated last)."""
    n = result.bit_count()
    total = ev.everything.bit_count()
    scan_rows = total if limit is None else min(total, limit * total // max(n, 1))
    if n * _FETCH_US <= scan_rows * _SCAN_US:
        rows = _rows(ev.conn, bitmaps.to_ids(result))
        items = [(pid, path, taken) for pid, (path, taken) in rows.items()]
        if sort == "path":
            items.sort(key=lambda r: r[1].encode("utf-8", "surrogateescape"))  # SQLite's byte order
        else:
            items.sort(key=lambda r: r[0], reverse=True)
            items.sort(key=lambda r: r[2] or "", reverse=True)  # stable: ties keep id order
        return items[:limit] if limit is not None else items
    member = bitmaps.Membership(result)
    # Undated last: SQLite's default for DESC, not PostgreSQL's.
    nulls = " NULLS LAST" if getattr(ev.conn, "dialect", "sqlite") == "postgresql" else ""
    order = "path" if sort == "path" else f"taken DESC{nulls}, id DESC"
    out: list[tuple[int, str, str | None]] = []
    cur = _cursor(ev.conn, f"SELECT id, path, taken FROM photo ORDER BY {order}")
    while limit is None or len(out) < limit:
        batch = cur.fetchmany(256)
        if not batch:
            break
        out.extend(r for r in batch if r[0] in member)
    cur.close()
    return out[:limit] if limit is not None else out


def _by_score(ev: _Evaluator, node: Node, result: int, limit: int | None) -> list[tuple[float, int]]:
    """(score, id) best first, ties newest-indexed first; photos no query tag scores get 0."""
    tags = ranking_tags(node)
    if not tags:
        return [(0.0, pid) for pid in _take(ids_descending(result), limit)]
    n = result.bit_count()
    fetch_cost = n * len(tags) * _FETCH_US
    if fetch_cost < 2_000:  # a few ms: not worth estimating the alternative
        return _score_fetched(ev, tags, result, limit)
    streams = [(tag, _descendants(ev, tag)) for tag in tags]
    merge_cost = _stream_estimate(ev, tags, result, limit) * _STREAM_US
    merge_cost += sum(len(d) for _, d in streams) * _STREAM_OPEN_US
    if fetch_cost <= merge_cost:
        return _score_fetched(ev, tags, result, limit)
    return _score_merged(ev, streams, result, limit)


def _descendants(ev: _Evaluator, tag: Tag) -> list[int]:
    r = resolve_sql(tag)
    return [
        row[0]
        for row in ev.conn.execute(f"SELECT DISTINCT c.descendant FROM tag_closure c WHERE c.ancestor IN ({r.text})", r.params)
    ]


def _take(items: Iterator[Any], limit: int | None) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if limit is not None and len(out) >= limit:
            break
        out.append(item)
    return out


def _stream_estimate(ev: _Evaluator, tags: list[Tag], result: int, limit: int | None) -> float:
    """Rows a merge would read to find `limit` results: limit * |tag photos| / |results among them|."""
    scored = 0
    for tag in tags:
        scored |= ev.tag_bitmap(tag)  # qualifiers only shrink a tag's stream
    hits = (scored & result).bit_count()
    if hits == 0:
        return float(scored.bit_count())
    want = hits if limit is None else min(limit, hits)
    return want * scored.bit_count() / hits


def _score_fetched(ev: _Evaluator, tags: list[Tag], result: int, limit: int | None) -> list[tuple[float, int]]:
    best = _scores(ev, tags, bitmaps.to_ids(result))
    ranked = sorted(((score, pid) for pid, score in best.items()), key=lambda r: (-r[0], -r[1]))
    return ranked[:limit] if limit is not None else ranked


def _scores(ev: _Evaluator, tags: list[Tag], ids: list[int]) -> dict[int, float]:
    """Each photo's ranking score: its best score among the query's tags, 0 if none."""
    best = dict.fromkeys(ids, 0.0)
    for start in range(0, len(ids) if tags else 0, 100_000):
        part = _json_ids(ids[start:start + 100_000])
        for tag in tags:
            row = tag_row_sql(tag, ev.suggestions)
            for pid, score in ev.conn.execute(
                "SELECT pt.photo_id, max(pt.score) FROM photo_tag pt "
                f"WHERE pt.photo_id IN (SELECT value FROM json_each(?)) AND {row.text} GROUP BY pt.photo_id",
                (part, *row.params),
            ):
                if score > best[pid]:
                    best[pid] = score
    return best


def _score_merged(ev: _Evaluator, tags: list[tuple[Tag, list[int]]], result: int, limit: int | None) -> list[tuple[float, int]]:
    streams = []
    for tag, descendants in tags:
        for tid in descendants:
            row = tag_row_sql(tag, ev.suggestions, tag_ids=Sql("?", (tid,)))
            streams.append(_stream(ev.conn, f"SELECT pt.photo_id, pt.score FROM photo_tag pt WHERE {row.text} ORDER BY pt.score DESC, pt.photo_id DESC", row.params))
    member = bitmaps.Membership(result)
    seen: set[int] = set()
    out: list[tuple[float, int]] = []
    for pid, score in heapq.merge(*streams, key=lambda r: (-r[1], -r[0])):
        if score <= 0.0 or (limit is not None and len(out) >= limit):
            break
        if pid in seen or pid not in member:
            continue
        seen.add(pid)
        out.append((score, pid))
    for stream in streams:
        stream.close()
    if limit is None or len(out) < limit:
        rest = result & ~bitmaps.from_ids(seen)
        want = None if limit is None else limit - len(out)
        out.extend((0.0, pid) for pid in _take(ids_descending(rest), want))
    return out


def _cursor(conn: sqlite3.Connection, sql: str, params: tuple[object, ...] = ()) -> Any:
    """A cursor read a batch at a time: SQLite steps its statement anyway; on PostgreSQL a
    server-side cursor keeps the rows on the server until asked for."""
    stream = getattr(conn, "stream", None)
    return stream(sql, params) if stream is not None else conn.execute(sql, params)


def _stream(conn: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> Generator[tuple[int, float], None, None]:
    cur = _cursor(conn, sql, params)
    size = 16  # many streams start at once; read more only from those that keep winning
    try:
        while batch := cur.fetchmany(size):
            yield from batch
            size = min(size * 4, 4096)
    finally:
        cur.close()


# -- stats -------------------------------------------------------------------------------------


def run_stats(conn: sqlite3.Connection, *, top: int = 20, failed: int = 50) -> dict[str, Any]:
    by_status = {s: bitmaps.load(conn, bitmaps.STATUS, [bitmaps.STATUS_CODE[s]]) for s in STATUSES}
    visible = 0
    for status, bits in by_status.items():
        if status != "gone":
            visible |= bits
    per_tag: dict[int, list[tuple[int, bytes]]] = {}
    for key, chunk, bits in conn.execute("SELECT key, chunk, bits FROM bitmap WHERE kind = ?", (bitmaps.TAG,)):
        per_tag.setdefault(key, []).append((chunk, bits))
    counts = []
    for tid, rows in per_tag.items():
        count = (bitmaps._assemble(rows) & visible).bit_count()
        if count:
            counts.append((count, tid))
    names = {tid: (name, bool(v)) for tid, name, v in conn.execute("SELECT id, name, in_vocab FROM tag")}
    counts.sort(key=lambda c: (-c[0], names[c[1]][0]))
    failed_rows = conn.execute(
        "SELECT path, error FROM photo WHERE status = 'failed' ORDER BY path LIMIT ?", (failed,)
    ).fetchall()
    models = conn.execute(
        "SELECT model_version, count(*) FROM photo WHERE status != 'gone' GROUP BY model_version ORDER BY count(*) DESC, model_version IS NULL, model_version"
    ).fetchall()
    embeddings = bitmaps.load(conn, bitmaps.EMBEDDING, [0]) & visible
    return {
        "photos": {"total": visible.bit_count(), **{s: b.bit_count() for s, b in by_status.items()}},
        "tags": {
            "vocabulary": sum(1 for _, v in names.values() if v),
            "in_use": len(counts),
            "top": [{"name": names[tid][0], "photos": count} for count, tid in counts[:top]],
        },
        "failed": {
            "total": by_status["failed"].bit_count(),
            "files": [{"path": path, "error": error} for path, error in failed_rows],
        },
        "models": [{"version": version, "photos": count} for version, count in models],
        "embeddings": embeddings.bit_count(),
    }
