"""The search query language's SQL: syntax tree (tagd.index.query_tree) -> parameterised SQL.
Pure: no I/O.

Every value a user typed reaches SQL as a bound parameter; the SQL text is built only from this
module's constants, so no query can change what a statement does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from tagd.index.query_tree import (
    ACTIVE_STATES, And, Camera, Everything, Leaf, Node, Not, Or, PathGlob, SORTS, SOURCE_CODE,
    STATE_CODE, SUGGESTION_STATES, Source, State, Status, Tag, Taken, mentions_status, ranking_tags,
    tag_key,
)

# ---------------------------------------------------------------------------------------------
# SQL. The schema is tagd.index.schema's: `photo p`, `photo_tag pt`, `tag_alias` (a typed word
# -> the tags it names), `tag_closure` (ancestor, descendant), including each tag itself.


@dataclass(frozen=True)
class Sql:
    text: str
    params: tuple[object, ...] = ()


def states_for(tag: Tag, suggestions: bool) -> tuple[str, ...]:
    if tag.state is not None:
        return (tag.state,)
    return SUGGESTION_STATES if suggestions else ACTIVE_STATES


def _in(values: Sequence[object]) -> str:
    return "(" + ",".join("?" * len(values)) + ")"


def resolve_sql(tag: Tag) -> Sql:
    """The ids of the tags a word names: by name, else by synonym (see schema.rebuild_aliases)."""
    key = tag.key
    if tag.prefix:
        if not key:
            return Sql("SELECT id FROM tag")
        return Sql("SELECT tag_id FROM tag_alias WHERE key >= ? AND substr(key, 1, ?) = ?", (key, len(key), key))
    return Sql("SELECT tag_id FROM tag_alias WHERE key = ?", (key,))


def tag_row_sql(tag: Tag, suggestions: bool, tag_ids: Sql | None = None) -> Sql:
    """A condition on one `photo_tag pt` row: the tag or a descendant, in a state that counts,
    with the term's score, source and state. `tag_ids` replaces the name lookup when the caller
    already resolved it."""
    if tag_ids is None:
        r = resolve_sql(tag)
        tag_ids = Sql(f"SELECT c.descendant FROM tag_closure c WHERE c.ancestor IN ({r.text})", r.params)
    states = [STATE_CODE[s] for s in states_for(tag, suggestions)]
    text = f"pt.tag_id IN ({tag_ids.text}) AND pt.state IN {_in(states)}"
    params: list[object] = [*tag_ids.params, *states]
    if tag.score is not None:
        s = tag.score
        if s.lo is not None:
            text += " AND pt.score >= ?" if s.lo_inclusive else " AND pt.score > ?"
            params.append(s.lo)
        if s.hi is not None:
            text += " AND pt.score <= ?" if s.hi_inclusive else " AND pt.score < ?"
            params.append(s.hi)
    if tag.source is not None:
        text += " AND pt.source = ?"
        params.append(SOURCE_CODE[tag.source])
    return Sql(text, tuple(params))


def like_patterns(pattern: str) -> tuple[str, str]:
    """`path:` value -> two LIKE patterns (PostgreSQL, paths as BYTEA): glob_patterns' meaning,
    except that `?` there is one byte, not one character."""
    body = pattern.rstrip("/") or "/"
    body = body.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_").replace("*", "%").replace("?", "_")
    if not body.startswith("/"):
        body = "%/" + body
    return body, body.rstrip("/") + "/%"


def glob_patterns(pattern: str) -> tuple[str, str]:
    """`path:` value -> two SQLite GLOB patterns (the file, or anything under the folder).

    `*` and `?` are wildcards; `[` is literal. A pattern not starting with `/` may match from any
    folder boundary: `Pictures/2024/*` matches /home/me/Pictures/2024/a.jpg.
    """
    body = pattern.rstrip("/") or "/"
    body = body.replace("[", "[[]")
    if not body.startswith("/"):
        body = "*/" + body
    return body, body.rstrip("/") + "/*"


def _path_param(pattern: str) -> bytes:
    # Bound as bytes and CAST to TEXT: paths are bytes on Linux, and undecodable names (held as
    # surrogate escapes in Python) must compare byte for byte with what the index stored.
    return pattern.encode("utf-8", "surrogateescape") if _encodable(pattern) else pattern.encode("utf-8", "replace")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return False
    return True


def leaf_photo_sql(leaf: Leaf, suggestions: bool, dialect: str = "sqlite") -> Sql:
    """A condition on `photo p` that is exactly true or false (never NULL, so NOT is a complement).
    `dialect`: "sqlite" or "postgresql" (tagd.index.postgres rewrites the rest)."""
    if isinstance(leaf, Tag):
        row = tag_row_sql(leaf, suggestions)
        return Sql(f"EXISTS (SELECT 1 FROM photo_tag pt WHERE pt.photo_id = p.id AND {row.text})", row.params)
    if isinstance(leaf, Taken):
        parts, params = [], []
        if leaf.lo is not None:
            parts.append("p.taken >= ?")
            params.append(leaf.lo.isoformat())
        if leaf.hi is not None:
            parts.append("p.taken < ?")
            params.append(leaf.hi.isoformat())
        return Sql(f"(p.taken IS NOT NULL AND {' AND '.join(parts)})", tuple(params))
    if isinstance(leaf, PathGlob) and dialect == "postgresql":
        file_like, folder_like = like_patterns(leaf.value)
        return Sql("(p.path LIKE CAST(? AS TEXT) OR p.path LIKE CAST(? AS TEXT))",
                   (_path_param(file_like), _path_param(folder_like)))
    if isinstance(leaf, PathGlob):
        file_glob, folder_glob = glob_patterns(leaf.value)
        return Sql(
            "(p.path GLOB CAST(? AS TEXT) OR p.path GLOB CAST(? AS TEXT))",
            (_path_param(file_glob), _path_param(folder_glob)),
        )
    if isinstance(leaf, Camera):
        return Sql("(p.camera_key IS NOT NULL AND instr(p.camera_key, ?) > 0)", (tag_key(leaf.value),))
    if isinstance(leaf, Status):
        return Sql("p.status = ?", (leaf.value,))
    if isinstance(leaf, Source):
        states = [STATE_CODE[s] for s in (SUGGESTION_STATES if suggestions else ACTIVE_STATES)]
        return Sql(
            f"EXISTS (SELECT 1 FROM photo_tag pt WHERE pt.photo_id = p.id AND pt.source = ? AND pt.state IN {_in(states)})",
            (SOURCE_CODE[leaf.value], *states),
        )
    if isinstance(leaf, State):
        return Sql("EXISTS (SELECT 1 FROM photo_tag pt WHERE pt.photo_id = p.id AND pt.state = ?)", (STATE_CODE[leaf.value],))
    raise TypeError(leaf)


def where_sql(node: Node, suggestions: bool = False, dialect: str = "sqlite") -> Sql:
    """The whole query as one condition on `photo p` (photos marked gone are the caller's business)."""
    if isinstance(node, Everything):
        return Sql("1 = 1")
    if isinstance(node, Not):
        inner = where_sql(node.child, suggestions, dialect)
        return Sql(f"NOT ({inner.text})", inner.params)
    if isinstance(node, (And, Or)):
        parts = [where_sql(c, suggestions, dialect) for c in node.children]
        joiner = " AND " if isinstance(node, And) else " OR "
        return Sql("(" + joiner.join(p.text for p in parts) + ")", tuple(x for p in parts for x in p.params))
    return leaf_photo_sql(node, suggestions, dialect)


def score_sql(node: Node, suggestions: bool = False, dialect: str = "sqlite") -> Sql:
    """A photo's ranking score: the best score among the tags named outside a NOT; 0 if none."""
    parts: list[str] = ["0"]
    params: list[object] = []
    for tag in ranking_tags(node):
        row = tag_row_sql(tag, suggestions)
        parts.append(f"coalesce((SELECT max(pt.score) FROM photo_tag pt WHERE pt.photo_id = p.id AND {row.text}), 0)")
        params.extend(row.params)
    if len(parts) == 1:
        return Sql("0")
    greatest = "GREATEST(" if dialect == "postgresql" else "max("  # SQLite's max() of several values
    return Sql(greatest + ", ".join(parts) + ")", tuple(params))


def search_sql(node: Node, *, sort: str = "score", limit: int | None = None, suggestions: bool = False,
               dialect: str = "sqlite") -> Sql:
    """The reference form of a search, all in one statement: rows (id, path, taken, score).

    The index answers searches with bitmaps (tagd.index.search), which is far faster on a large
    library; this statement defines the same result and the tests hold both to it.
    """
    if sort not in SORTS:
        raise ValueError(f"sort must be one of {SORTS}")
    where = where_sql(node, suggestions, dialect)
    score = score_sql(node, suggestions, dialect)
    text = f"SELECT p.id, p.path, p.taken, {score.text} AS score FROM photo p WHERE {where.text}"
    params = [*score.params, *where.params]
    if not mentions_status(node):
        text += " AND p.status != 'gone'"
    text += {
        "score": " ORDER BY score DESC, p.id DESC",
        # Undated last: SQLite's default for DESC, not PostgreSQL's.
        "taken": " ORDER BY p.taken DESC" + (" NULLS LAST" if dialect == "postgresql" else "") + ", p.id DESC",
        "path": " ORDER BY p.path",
    }[sort]
    if limit is not None:
        text += " LIMIT ?"
        params.append(int(limit))
    return Sql(text, tuple(params))
