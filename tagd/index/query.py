"""The search query language: text -> syntax tree -> parameterised SQL. Pure: no I/O.

The grammar is in README.md ("Searching the index"). In short: bare words are tags, juxtaposition
is AND, `OR` and `NOT`/`-` as in a search engine, parentheses group, `"..."` quotes, `tag*` is a
prefix, `tag:>0.8` / `tag:user` / `tag:suggested` qualify one tag, and `field:value` filters on
taken, path, camera, status, source and state.

Every value a user typed reaches SQL as a bound parameter; the SQL text is built only from this
module's constants, so no query can change what a statement does.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Iterator, Sequence, Union

from tagd.index.errors import QueryError

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
class PathGlob:
    pattern: str
    col: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Camera:
    text: str
    col: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Status:
    value: str
    col: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Source:
    value: str
    col: int = field(default=0, compare=False)


@dataclass(frozen=True)
class State:
    value: str
    col: int = field(default=0, compare=False)


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
# Lexer: parentheses, `-`, operators, and terms. A term is a run of characters up to whitespace
# or a parenthesis, with `"..."` quoting anything inside it; each character remembers its column
# and whether it was quoted (a quoted `:` or `*` is just a character).


@dataclass
class _Token:
    kind: str  # "(", ")", "-", "OR", "AND", "NOT", "TERM", "END"
    col: int
    chars: list[tuple[str, int, bool]] = field(default_factory=list)


def _lex(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "()-":
            tokens.append(_Token(c, i + 1))
            i += 1
        else:
            start = i
            chars: list[tuple[str, int, bool]] = []
            while i < n and not text[i].isspace() and text[i] not in "()":
                if text[i] == '"':
                    opened = i
                    i += 1
                    while True:
                        if i >= n:
                            raise QueryError(opened + 1, "unterminated quote")
                        ch = text[i]
                        if ch == "\\" and i + 1 < n and text[i + 1] in '"\\':
                            chars.append((text[i + 1], i + 2, True))
                            i += 2
                        elif ch == '"':
                            i += 1
                            break
                        else:
                            chars.append((ch, i + 1, True))
                            i += 1
                else:
                    chars.append((text[i], i + 1, False))
                    i += 1
            raw = text[start:i]
            tokens.append(_Token(raw if raw in OPERATORS else "TERM", start + 1, chars))
    tokens.append(_Token("END", len(text.rstrip()) + 1))
    return tokens


# ---------------------------------------------------------------------------------------------
# Parser: recursive descent, NOT binds tighter than AND, AND tighter than OR.

_ENDS_OPERAND = ("END", ")", "OR", "AND")
# Parentheses and NOTs nest, and whatever reads a query recurses with them: the parser four
# frames per parenthesis, the search and the SQL builder about as many (each parenthesis can add
# an OR and an AND level to the tree), the printer six. 100 levels stay within 400-600 frames,
# well inside Python's default limit of 1000 wherever the caller's own stack stands.
MAX_DEPTH = 100


def parse(text: str) -> Node:
    """Parse a query; raise QueryError(col, reason) on a syntax error."""
    return _Parser(text).parse()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _lex(text)
        self.i = 0
        self.depth = 0  # parentheses and NOTs open around the current token

    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def advance(self) -> _Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def parse(self) -> Node:
        if self.tok.kind == "END":
            return Everything()
        node = self.or_expr()
        if self.tok.kind == ")":
            raise QueryError(self.tok.col, "unmatched ')'")
        assert self.tok.kind == "END", self.tok
        return node

    def nest(self, tok: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise QueryError(tok.col, f"query nested too deeply (more than {MAX_DEPTH} levels)")

    def or_expr(self) -> Node:
        items = [self.and_expr()]
        while self.tok.kind == "OR":
            self.advance()
            if self.tok.kind in _ENDS_OPERAND:
                raise QueryError(self.tok.col, "expected a tag after OR")
            items.append(self.and_expr())
        return _flatten(Or, items)

    def and_expr(self) -> Node:
        items = [self.unary()]
        while self.tok.kind in ("TERM", "(", "-", "NOT", "AND"):
            if self.tok.kind == "AND":
                self.advance()
                if self.tok.kind in _ENDS_OPERAND:
                    raise QueryError(self.tok.col, "expected a tag after AND")
            items.append(self.unary())
        return _flatten(And, items)

    def unary(self) -> Node:
        if self.tok.kind in ("-", "NOT"):
            op = self.advance()
            if self.tok.kind in _ENDS_OPERAND:
                raise QueryError(self.tok.col, f"expected a tag after {op.kind}")
            self.nest(op)
            node = Not(self.unary())
            self.depth -= 1
            return node
        return self.primary()

    def primary(self) -> Node:
        tok = self.tok
        if tok.kind == "(":
            self.advance()
            if self.tok.kind == ")":
                raise QueryError(self.tok.col, "empty parentheses")
            if self.tok.kind == "END":
                raise QueryError(tok.col, "'(' is never closed")
            self.nest(tok)
            node = self.or_expr()
            if self.tok.kind != ")":
                raise QueryError(tok.col, "'(' is never closed")
            self.advance()
            self.depth -= 1
            return node
        if tok.kind == "TERM":
            self.advance()
            return _term(tok)
        if tok.kind == ")":
            raise QueryError(tok.col, "unmatched ')'")
        if tok.kind in ("OR", "AND"):
            raise QueryError(tok.col, f"expected a tag before {tok.kind}")
        raise QueryError(tok.col, "expected a tag")


def _flatten(kind: type[And] | type[Or], items: list[Node]) -> Node:
    if len(items) == 1:
        return items[0]
    flat: list[Node] = []
    for item in items:
        flat.extend(item.children if isinstance(item, kind) else (item,))
    return kind(tuple(flat))


_Chars = Sequence[tuple[str, int, bool]]


def _text(chars: _Chars) -> str:
    return "".join(c for c, _, _ in chars)


def _split_colons(chars: _Chars) -> list[tuple[list[tuple[str, int, bool]], int]]:
    """Split at unquoted ':'; each part with the column where it starts."""
    parts: list[tuple[list[tuple[str, int, bool]], int]] = [([], chars[0][1] if chars else 0)]
    for ch in chars:
        if ch[0] == ":" and not ch[2]:
            parts.append(([], ch[1] + 1))
        else:
            parts[-1][0].append(ch)
    return parts


def _term(tok: _Token) -> Leaf:
    chars = tok.chars
    if not chars:
        raise QueryError(tok.col, 'empty tag ("")')
    colon = next((i for i, (c, _, q) in enumerate(chars) if c == ":" and not q), None)
    if colon and not any(q for _, _, q in chars[:colon]):
        name = _text(chars[:colon]).lower()
        if name in FIELDS:
            value = chars[colon + 1:]
            value_col = chars[colon][1] + 1
            if not value:
                raise QueryError(value_col, f"expected a value after '{_text(chars[:colon + 1])}'")
            if name == "tag":
                return _tag(value, value_col)
            return _filter(name, value, value_col)
    return _tag(chars, tok.col)


def _tag(chars: _Chars, col: int) -> Tag:
    parts = _split_colons(chars)
    name_chars, _ = parts[0]
    prefix = bool(name_chars) and name_chars[-1][0] == "*" and not name_chars[-1][2]
    if prefix:
        name_chars = name_chars[:-1]
    for c, ccol, quoted in name_chars:
        if c == "*" and not quoted:
            raise QueryError(ccol, "'*' is only allowed at the end of a tag (a prefix match)")
    name = _text(name_chars)
    if not prefix and not tag_key(name):
        raise QueryError(col, "expected a tag name" if len(parts) > 1 and not name else 'empty tag ("")')
    score: ScoreRange | None = None
    source = state = None
    for qual_chars, qcol in parts[1:]:
        qual = _text(qual_chars).lower()
        if not qual:
            raise QueryError(qcol, "expected a score (>0.8), a source or a state after ':'")
        if qual in SOURCES:
            if source is not None:
                raise QueryError(qcol, f"tag {name!r} has two sources")
            source = qual
        elif qual in STATES:
            if state is not None:
                raise QueryError(qcol, f"tag {name!r} has two states")
            state = qual
        elif qual[0] in "<>.0123456789":
            if score is not None:
                raise QueryError(qcol, f"tag {name!r} has two score conditions")
            score = _score(qual, qcol)
        else:
            raise QueryError(
                qcol,
                f"unknown qualifier {qual!r} for tag {name!r} (expected a score like >0.8, "
                f"a source: {', '.join(SOURCES)}, or a state: {', '.join(STATES)})",
            )
    return Tag(name, prefix, score, source, state, col)


_NUM = r"(?:\d+(?:\.\d+)?|\.\d+)"
_CMP = re.compile(rf"(>=|<=|>|<)({_NUM})")
_RANGE = re.compile(rf"({_NUM})?\.\.({_NUM})?")


def _score(text: str, col: int) -> ScoreRange:
    def number(s: str) -> float:
        value = float(s)
        if not 0.0 <= value <= 1.0:
            raise QueryError(col, f"score {s} is outside 0..1")
        return value

    if m := _CMP.fullmatch(text):
        op, value = m.group(1), number(m.group(2))
        if op[0] == ">":
            return ScoreRange(lo=value, lo_inclusive=op == ">=")
        return ScoreRange(hi=value, hi_inclusive=op == "<=")
    if (m := _RANGE.fullmatch(text)) and (m.group(1) or m.group(2)):
        lo = number(m.group(1)) if m.group(1) else None
        hi = number(m.group(2)) if m.group(2) else None
        if lo is not None and hi is not None and lo > hi:
            raise QueryError(col, f"empty score range {text}")
        return ScoreRange(lo=lo, hi=hi)
    raise QueryError(col, f"invalid score {text!r} (expected >0.8, >=0.8, <0.5, <=0.5 or 0.5..0.9)")


def _filter(name: str, chars: _Chars, col: int) -> Leaf:
    value = _text(chars)
    if name == "taken":
        lo, hi = _dates(value, col)
        return Taken(lo, hi, col)
    if name == "path":
        return PathGlob(value, col)
    if name == "camera":
        if not tag_key(value):
            raise QueryError(col, "expected a value after 'camera:'")
        return Camera(value, col)
    choices = {"status": STATUSES, "source": SOURCES, "state": STATES}[name]
    if value.lower() not in choices:
        raise QueryError(col, f"unknown {name} {value!r} (expected {_one_of(choices)})")
    if name == "status":
        return Status(value.lower(), col)
    if name == "source":
        return Source(value.lower(), col)
    return State(value.lower(), col)


def _one_of(choices: Sequence[str]) -> str:
    return ", ".join(choices[:-1]) + " or " + choices[-1]


_DATE = re.compile(r"(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?")


def _period(text: str, col: int) -> tuple[date, date | None]:
    """`2024`, `2024-06` or `2024-06-15` as [first day, first day after); None past year 9999."""
    m = _DATE.fullmatch(text)
    try:
        if not m:
            raise ValueError
        year, month, day = int(m.group(1)), m.group(2), m.group(3)
        if day is not None:
            start = date(year, int(month), int(day))
            end = start + timedelta(days=1) if start < date.max else None
        elif month is not None:
            start = date(year, int(month), 1)
            end = _next_month(start)
        else:
            start = date(year, 1, 1)
            end = date(year + 1, 1, 1) if year < 9999 else None
    except (ValueError, OverflowError):
        raise QueryError(col, f"invalid date {text!r} (expected YYYY, YYYY-MM or YYYY-MM-DD)") from None
    return start, end


def _next_month(d: date) -> date | None:
    if d.month < 12:
        return date(d.year, d.month + 1, 1)
    return date(d.year + 1, 1, 1) if d.year < 9999 else None


def _dates(value: str, col: int) -> tuple[date | None, date | None]:
    lo: date | None
    hi: date | None
    if m := re.fullmatch(r"(>=|<=|>|<)(.*)", value):
        op, rest = m.group(1), m.group(2)
        start, end = _period(rest, col + len(op))
        if op == ">":
            if end is None:
                raise QueryError(col, f"empty date range {value}")
            lo, hi = end, None
        elif op == ">=":
            lo, hi = start, None
        elif op == "<":
            lo, hi = None, start
        else:
            lo, hi = None, end
    elif ".." in value:
        a, b = value.split("..", 1)
        if not a and not b:
            raise QueryError(col, "expected a date before or after '..'")
        lo = _period(a, col)[0] if a else None
        hi = _period(b, col + len(a) + 2)[1] if b else None
    else:
        lo, hi = _period(value, col)
    if lo is not None and hi is not None and lo >= hi:
        raise QueryError(col, f"empty date range {value}")
    if lo is None and hi is None:
        raise QueryError(col, f"date range {value} has no bounds")
    return lo, hi


# ---------------------------------------------------------------------------------------------
# Printing: the canonical text of a tree. parse(unparse(t)) == t for every tree the parser makes.

def _quote_tag(name: str) -> str:
    """A tag name as the lexer reads it back: quoted when bare text would mean something else."""
    if name and not any(c.isspace() or c in '()":*' for c in name) and not name.startswith("-") and name not in OPERATORS:
        return name
    return _quoted(name)


def _quote_value(value: str) -> str:
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
        name = _quote_tag(node.name) if node.name or not node.prefix else ""
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
        return "path:" + _quote_value(node.pattern)
    if isinstance(node, Camera):
        return "camera:" + _quote_value(node.text)
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


def leaf_photo_sql(leaf: Leaf, suggestions: bool) -> Sql:
    """A condition on `photo p` that is exactly true or false (never NULL, so NOT is a complement)."""
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
    if isinstance(leaf, PathGlob):
        file_glob, folder_glob = glob_patterns(leaf.pattern)
        return Sql(
            "(p.path GLOB CAST(? AS TEXT) OR p.path GLOB CAST(? AS TEXT))",
            (_path_param(file_glob), _path_param(folder_glob)),
        )
    if isinstance(leaf, Camera):
        return Sql("(p.camera_key IS NOT NULL AND instr(p.camera_key, ?) > 0)", (tag_key(leaf.text),))
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


def where_sql(node: Node, suggestions: bool = False) -> Sql:
    """The whole query as one condition on `photo p` (photos marked gone are the caller's business)."""
    if isinstance(node, Everything):
        return Sql("1")
    if isinstance(node, Not):
        inner = where_sql(node.child, suggestions)
        return Sql(f"NOT ({inner.text})", inner.params)
    if isinstance(node, (And, Or)):
        parts = [where_sql(c, suggestions) for c in node.children]
        joiner = " AND " if isinstance(node, And) else " OR "
        return Sql("(" + joiner.join(p.text for p in parts) + ")", tuple(x for p in parts for x in p.params))
    return leaf_photo_sql(node, suggestions)


def score_sql(node: Node, suggestions: bool = False) -> Sql:
    """A photo's ranking score: the best score among the tags named outside a NOT; 0 if none."""
    parts: list[str] = ["0"]
    params: list[object] = []
    for tag in ranking_tags(node):
        row = tag_row_sql(tag, suggestions)
        parts.append(f"coalesce((SELECT max(pt.score) FROM photo_tag pt WHERE pt.photo_id = p.id AND {row.text}), 0)")
        params.extend(row.params)
    if len(parts) == 1:
        return Sql("0")
    return Sql("max(" + ", ".join(parts) + ")", tuple(params))


def search_sql(node: Node, *, sort: str = "score", limit: int | None = None, suggestions: bool = False) -> Sql:
    """The reference form of a search, all in one statement: rows (id, path, taken, score).

    The index answers searches with bitmaps (tagd.index.search), which is far faster on a large
    library; this statement defines the same result and the tests hold both to it.
    """
    if sort not in SORTS:
        raise ValueError(f"sort must be one of {SORTS}")
    where = where_sql(node, suggestions)
    score = score_sql(node, suggestions)
    text = f"SELECT p.id, p.path, p.taken, {score.text} AS score FROM photo p WHERE {where.text}"
    params = [*score.params, *where.params]
    if not mentions_status(node):
        text += " AND p.status != 'gone'"
    text += {
        "score": " ORDER BY score DESC, p.id DESC",
        "taken": " ORDER BY p.taken DESC, p.id DESC",
        "path": " ORDER BY p.path",
    }[sort]
    if limit is not None:
        text += " LIMIT ?"
        params.append(int(limit))
    return Sql(text, tuple(params))
