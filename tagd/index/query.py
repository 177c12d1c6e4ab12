"""The search query language: text -> syntax tree (tagd.index.query_tree). Pure: no I/O.

The grammar is in README.md ("Searching the index"). In short: bare words are tags, juxtaposition
is AND, `OR` and `NOT`/`-` as in a search engine, parentheses group, `"..."` quotes, `tag*` is a
prefix, `tag:>0.8` / `tag:user` / `tag:suggested` qualify one tag, and `field:value` filters on
taken, path, camera, status, source and state. The tree becomes SQL in tagd.index.query_sql.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Sequence

from tagd.index.errors import QueryError
from tagd.index.query_tree import (
    And, Camera, Everything, FIELDS, Leaf, Node, Not, OPERATORS, Or, PathGlob, SOURCES, STATES,
    STATUSES, ScoreRange, Source, State, Status, Tag, Taken, tag_key,
)

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
