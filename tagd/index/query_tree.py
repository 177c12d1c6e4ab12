"""The search query language's syntax tree: its words (fields, states, sources), its node types,
and the canonical text of a tree (`unparse`). Pure: no I/O.

tagd.index.query reads text into these trees; tagd.index.query_sql turns them into SQL.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Iterator, Union

FIELDS = ("tag", "taken", "path", "camera", "status", "source", "state")
STATUSES = ("tagged", "failed", "pending", "gone")
SOURCES = ("user", "model", "neighbours")
STATES = ("kept", "added", "suggested", "suggested-removal", "removed", "rejected")
# "The photo has the tag": what tagd or the user put on the photo and nobody took off.
ACTIVE_STATES = ("kept", "added")
# With --suggestions: also what tagd proposes, and user tags it proposes to remove (still there).
SUGGESTION_STATES = ("kept", "added", "suggested", "suggested-removal")
OPERATORS = ("OR", "AND", "NOT")
# How photo_tag stores a state and a source: small integers (a million photos' worth of text
# would make the table and its index a third larger).
STATE_CODE = {name: code for code, name in enumerate(STATES)}
SOURCE_CODE = {name: code for code, name in enumerate(SOURCES)}
SORTS = ("score", "taken", "path")


def tag_key(name: str) -> str:
    """The form tags are compared in: NFC, case-folded, inner whitespace collapsed.

    Lone surrogates (undecodable bytes from argv or a file) become U+FFFD so that a key is
    always valid UTF-8 and never matches by accident.
    """
    name = name.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return " ".join(unicodedata.normalize("NFC", name).casefold().split())


# ---------------------------------------------------------------------------------------------
# Syntax tree. `col` is where the term starts (1-based); it is left out of equality so that a
# tree printed and parsed again compares equal to the original.


@dataclass(frozen=True)
class ScoreRange:
    lo: float | None = None
    lo_inclusive: bool = True
    hi: float | None = None
    hi_inclusive: bool = True

    def contains(self, score: float) -> bool:
        if self.lo is not None and (score < self.lo or (score == self.lo and not self.lo_inclusive)):
            return False
        if self.hi is not None and (score > self.hi or (score == self.hi and not self.hi_inclusive)):
            return False
        return True


@dataclass(frozen=True)
class Tag:
    name: str
    prefix: bool = False
    score: ScoreRange | None = None
    source: str | None = None
    state: str | None = None
    col: int = field(default=0, compare=False)

    @property
    def key(self) -> str:
        return tag_key(self.name)

    @property
    def qualified(self) -> bool:
        """True when a bare bitmap of the tag cannot answer it (score, source or state given)."""
        return self.score is not None or self.source is not None or self.state is not None


@dataclass(frozen=True)
class Taken:
    """Date taken in [lo, hi): day precision, either end open."""

    lo: date | None
    hi: date | None
    col: int = field(default=0, compare=False)


@dataclass(frozen=True)
class _Filter:
    """`field:value`: one value the user typed, and where."""

    value: str
    col: int = field(default=0, compare=False)


# One class per field, so that a tree says which filter each leaf is (dataclass equality
# compares the class too: Status("x") is not Source("x")).
@dataclass(frozen=True)
class PathGlob(_Filter):
    """path:GLOB, as typed (query_sql.glob_patterns reads it)."""


@dataclass(frozen=True)
class Camera(_Filter):
    """camera:TEXT, a substring of "Make Model"."""


@dataclass(frozen=True)
class Status(_Filter):
    """status:tagged|failed|pending|gone (lower case)."""


@dataclass(frozen=True)
class Source(_Filter):
    """source:user|model|neighbours (lower case)."""


@dataclass(frozen=True)
class State(_Filter):
    """state:kept|added|... (lower case)."""


@dataclass(frozen=True)
class Not:
    child: Node


@dataclass(frozen=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Everything:
    """The empty query: every photo."""


Leaf = Union[Tag, Taken, PathGlob, Camera, Status, Source, State]
Node = Union[Leaf, Not, And, Or, Everything]


def leaves(node: Node, positive: bool = True) -> Iterator[tuple[Leaf, bool]]:
    """Every leaf with its polarity (False under an odd number of NOTs)."""
    if isinstance(node, Not):
        yield from leaves(node.child, not positive)
    elif isinstance(node, (And, Or)):
        for child in node.children:
            yield from leaves(child, positive)
    elif not isinstance(node, Everything):
        yield node, positive


def ranking_tags(node: Node) -> list[Tag]:
    """The tag terms a photo's ranking score comes from: those not under a NOT."""
    return [leaf for leaf, positive in leaves(node) if positive and isinstance(leaf, Tag)]


def mentions_status(node: Node) -> bool:
    return any(isinstance(leaf, Status) for leaf, _ in leaves(node))



# ---------------------------------------------------------------------------------------------
# Printing: the canonical text of a tree. parse(unparse(t)) == t for every tree the parser makes.

def quote_tag(name: str) -> str:
    """A tag name as the lexer reads it back: quoted when bare text would mean something else."""
    if name and not any(c.isspace() or c in '()":*' for c in name) and not name.startswith("-") and name not in OPERATORS:
        return name
    return _quoted(name)


def quote_value(value: str) -> str:
    """A field's value: only whitespace, parentheses and quotes end it early."""
    if value and not any(c.isspace() or c in '()"' for c in value):
        return value
    return _quoted(value)


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _number(x: float) -> str:
    text = repr(x)
    if "e" in text:  # 1e-05 does not parse back; the exact decimal does
        from decimal import Decimal

        return format(Decimal(x), "f")
    return text


def _unparse_score(s: ScoreRange) -> str:
    if s.lo is not None and s.hi is not None:
        if not (s.lo_inclusive and s.hi_inclusive):
            raise ValueError("a score range with both ends is inclusive (0.2..0.8)")
        return f"{_number(s.lo)}..{_number(s.hi)}"
    if s.lo is not None:
        return f"{'>=' if s.lo_inclusive else '>'}{_number(s.lo)}"
    if s.hi is not None:
        return f"{'<=' if s.hi_inclusive else '<'}{_number(s.hi)}"
    raise ValueError("a score range needs a bound")


def unparse(node: Node) -> str:
    if isinstance(node, Everything):
        return ""
    if isinstance(node, Tag):
        quals = []
        if node.score is not None:
            quals.append(_unparse_score(node.score))
        quals += [q for q in (node.source, node.state) if q]
        name = quote_tag(node.name) if node.name or not node.prefix else ""
        if quals and node.name.lower() in FIELDS:
            name = _quoted(node.name)  # `"source":user` is the tag "source"; `source:user` a filter
        return name + ("*" if node.prefix else "") + "".join(":" + q for q in quals)
    if isinstance(node, Taken):
        if node.lo is not None and node.hi is not None:
            return f"taken:{node.lo.isoformat()}..{(node.hi - timedelta(days=1)).isoformat()}"
        if node.lo is not None:
            return f"taken:>={node.lo.isoformat()}"
        assert node.hi is not None
        return f"taken:<{node.hi.isoformat()}"
    if isinstance(node, PathGlob):
        return "path:" + quote_value(node.value)
    if isinstance(node, Camera):
        return "camera:" + quote_value(node.value)
    if isinstance(node, Status):
        return f"status:{node.value}"
    if isinstance(node, Source):
        return f"source:{node.value}"
    if isinstance(node, State):
        return f"state:{node.value}"
    if isinstance(node, Not):
        child = node.child
        inner = unparse(child)
        return "-(" + inner + ")" if isinstance(child, (And, Or)) else "-" + inner
    if isinstance(node, And):
        return " ".join("(" + unparse(c) + ")" if isinstance(c, Or) else unparse(c) for c in node.children)
    if isinstance(node, Or):
        return " OR ".join(unparse(c) for c in node.children)
    raise TypeError(node)
