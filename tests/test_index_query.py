"""The query language on its own: parse, print, errors with columns, and the SQL it makes."""

from __future__ import annotations

import re
import sqlite3
from datetime import date

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from query_strategies import FACETS, query_trees
from tagd.index.errors import QueryError
from tagd.index.query import MAX_DEPTH, parse
from tagd.index.query_sql import glob_patterns, search_sql, where_sql
from tagd.index.query_tree import (
    FIELDS,
    SOURCES,
    STATES,
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
    tag_key,
    unparse,
)

# -- examples ----------------------------------------------------------------------------------


def test_bare_words_are_tags_joined_by_and() -> None:
    assert parse("dog beach") == And((Tag("dog"), Tag("beach")))


def test_precedence_not_and_or() -> None:
    assert parse("a b OR c -d") == Or((And((Tag("a"), Tag("b"))), And((Tag("c"), Not(Tag("d"))))))
    assert parse("(a OR b) NOT c") == And((Or((Tag("a"), Tag("b"))), Not(Tag("c"))))
    assert parse("a AND b") == parse("a b")


def test_operators_are_uppercase_only() -> None:
    assert parse("cats or dogs") == And((Tag("cats"), Tag("or"), Tag("dogs")))
    assert parse('"OR" x') == And((Tag("OR"), Tag("x")))


def test_quotes_prefix_and_qualifiers() -> None:
    assert parse('"hot air balloon"') == Tag("hot air balloon")
    assert parse("tag:ca*") == Tag("ca", prefix=True)
    assert parse('"ca*"') == Tag("ca*")
    assert parse("dog:>0.8") == Tag("dog", score=ScoreRange(lo=0.8, lo_inclusive=False))
    assert parse("dog:<=0.5") == Tag("dog", score=ScoreRange(hi=0.5))
    assert parse("dog:0.5..0.9:user") == Tag("dog", score=ScoreRange(0.5, True, 0.9, True), source="user")
    assert parse("dog:suggested") == Tag("dog", state="suggested")
    assert parse('"source":user') == Tag("source", source="user")
    assert parse("t-shirt") == Tag("t-shirt")
    assert parse('"say \\"cheese\\""') == Tag('say "cheese"')


def test_filters() -> None:
    assert parse("taken:2024-06..2024-08") == Taken(date(2024, 6, 1), date(2024, 9, 1))
    assert parse("taken:>2023") == Taken(date(2024, 1, 1), None)
    assert parse("taken:>=2023") == Taken(date(2023, 1, 1), None)
    assert parse("taken:<2024-06") == Taken(None, date(2024, 6, 1))
    assert parse("taken:<=2024-06") == Taken(None, date(2024, 7, 1))
    assert parse("taken:2024-02-29") == Taken(date(2024, 2, 29), date(2024, 3, 1))
    assert parse("taken:2024-12") == Taken(date(2024, 12, 1), date(2025, 1, 1))
    assert parse("taken:..2023") == Taken(None, date(2024, 1, 1))
    assert parse("path:Pictures/2024/*") == PathGlob("Pictures/2024/*")
    assert parse('path:"My Pictures/a:b"') == PathGlob("My Pictures/a:b")
    assert parse("camera:pixel") == Camera("pixel")
    assert parse("Status:FAILED") == Status("failed")
    assert parse("source:user") == Source("user")
    assert parse("state:suggested-removal") == State("suggested-removal")
    assert parse("") == parse("   ") == Everything()
    assert parse("-tag:*") == Not(Tag("", prefix=True))


@pytest.mark.parametrize(
    "query, col, reason",
    [
        ("dog beach NOT", 14, "expected a tag after NOT"),
        ("dog -", 6, "expected a tag after -"),
        ("dog - ", 6, "expected a tag after -"),
        ("NOT OR cat", 5, "expected a tag after NOT"),
        ("dog OR", 7, "expected a tag after OR"),
        ("dog OR )", 8, "expected a tag after OR"),
        ("OR dog", 1, "expected a tag before OR"),
        ("dog AND", 8, "expected a tag after AND"),
        ("(dog OR cat", 1, "'(' is never closed"),
        ("dog (cat", 5, "'(' is never closed"),
        ("dog) cat", 4, "unmatched ')'"),
        ("dog ()", 6, "empty parentheses"),
        ('dog "hot air', 5, "unterminated quote"),
        ('""', 1, 'empty tag ("")'),
        ("do*g", 3, "'*' is only allowed at the end"),
        ("dog:>1.5", 5, "score 1.5 is outside 0..1"),
        ("dog:0.8", 5, "invalid score"),
        ("dog:0.9..0.5", 5, "empty score range"),
        ("dog:sometimes", 5, "unknown qualifier 'sometimes'"),
        ("dog:user:model", 10, "two sources"),
        ("dog:", 5, "expected a score"),
        (":>0.5", 1, "expected a tag name"),
        ("taken:2024-13", 7, "invalid date '2024-13'"),
        ("taken:june", 7, "invalid date 'june'"),
        ("taken:2024..2023", 7, "empty date range"),
        ("taken:2024-01..bad", 16, "invalid date 'bad'"),
        ("taken:>9999", 7, "empty date range"),
        ("taken:", 7, "expected a value after 'taken:'"),
        ("beach status:broken", 14, "unknown status 'broken' (expected tagged, failed, pending or gone)"),
        ("source:robot", 8, "unknown source"),
        ("camera:", 8, "expected a value after 'camera:'"),
    ],
)
def test_syntax_errors_say_where(query: str, col: int, reason: str) -> None:
    with pytest.raises(QueryError) as info:
        parse(query)
    assert info.value.col == col, str(info.value)
    assert reason in info.value.reason
    assert str(info.value).startswith(f"col {col}: ")


def test_columns_count_characters_not_bytes() -> None:
    with pytest.raises(QueryError) as info:
        parse("ünïcödé NOT")
    assert info.value.col == 12


@pytest.mark.parametrize(
    ("query", "col"),
    [
        ("(" * 300 + "dog", 101),
        ("(" * 101 + "dog" + ")" * 101, 101),
        ("-" * 1000 + "dog", 101),
        ("NOT " * 150 + "dog", 401),
        ("-(" * 60 + "dog" + ")" * 60, 101),  # a NOT and a parenthesis are a level each
        ("dog " + "(cat OR " * 120 + "x" + ")" * 120, 805),
    ],
)
def test_nesting_past_the_limit_is_a_syntax_error(query: str, col: int) -> None:
    with pytest.raises(QueryError) as info:
        parse(query)
    assert str(info.value) == f"col {col}: query nested too deeply (more than {MAX_DEPTH} levels)"


# The deepest trees a query can make: a NOT per level, or an OR and an AND per parenthesis.
DEEPEST = [
    "(" * MAX_DEPTH + "dog" + ")" * MAX_DEPTH,
    "-" * MAX_DEPTH + "dog",
    "(a b OR c " * MAX_DEPTH + "dog" + ")" * MAX_DEPTH,
    "-(a b OR c " * (MAX_DEPTH // 2) + "dog" + ")" * (MAX_DEPTH // 2),
]


@pytest.mark.parametrize("query", DEEPEST)
def test_nesting_up_to_the_limit_parses_prints_and_builds_sql(query: str) -> None:
    tree = parse(query)
    text = unparse(tree)
    # Compared as text: dataclass equality recurses deeper than anything tagd itself does.
    assert unparse(parse(text)) == text
    sql = search_sql(tree)
    assert sql.text.count("?") == len(sql.params)


def test_long_flat_chains_stay_flat() -> None:
    """5000 terms joined by OR or AND are one node with 5000 children, not a 5000-deep tree."""
    words = [f"t{i}" for i in range(5000)]
    ored = parse(" OR ".join(words))
    assert isinstance(ored, Or) and len(ored.children) == 5000
    anded = parse(" ".join(f"-{w}" for w in words))
    assert isinstance(anded, And) and len(anded.children) == 5000
    assert parse(unparse(ored)) == ored and where_sql(anded).text.count("?") == len(where_sql(anded).params)


def test_tag_key_normalises_case_width_and_unicode() -> None:
    assert tag_key("  Hot   Air\tBalloon ") == "hot air balloon"
    assert tag_key("Cafe\u0301") == tag_key("Café") == "café"
    assert tag_key("STRASSE") == tag_key("straße")
    assert tag_key("x\udcff").startswith("x\ufffd")  # an undecodable byte never matches a real tag
    tag_key("x\udcff").encode("utf-8")  # and the key is valid UTF-8


def test_glob_patterns() -> None:
    assert glob_patterns("Pictures/2024/*") == ("*/Pictures/2024/*", "*/Pictures/2024/*/*")
    assert glob_patterns("/home/me/") == ("/home/me", "/home/me/*")
    assert glob_patterns("a[1]") == ("*/a[[]1]", "*/a[[]1]/*")


# -- printing and parsing agree ------------------------------------------------------------------

NAMES = st.one_of(
    st.sampled_from(["dog", "hot air balloon", "OR", "and", "-x", "a:b", "ca*", 'q"uote', "back\\slash", "taken", "Tag", "ünï", "(p)", " "]),
    st.text(min_size=1, max_size=8),
)
SCORES = st.one_of(st.sampled_from([0.0, 0.5, 0.8, 1.0, 1e-05]), st.floats(0, 1, allow_nan=False))


@st.composite
def score_ranges(draw: st.DrawFn) -> ScoreRange:
    kind = draw(st.sampled_from(["lo", "hi", "both"]))
    if kind == "lo":
        return ScoreRange(lo=draw(SCORES), lo_inclusive=draw(st.booleans()))
    if kind == "hi":
        return ScoreRange(hi=draw(SCORES), hi_inclusive=draw(st.booleans()))
    a, b = sorted([draw(SCORES), draw(SCORES)])
    return ScoreRange(a, True, b, True)


@st.composite
def tags(draw: st.DrawFn) -> Tag:
    prefix = draw(st.booleans())
    name = draw(NAMES)
    if not prefix:
        assume(tag_key(name))
    elif not tag_key(name):
        name = ""
    return Tag(
        name,
        prefix,
        draw(st.none() | score_ranges()),
        draw(st.none() | st.sampled_from(SOURCES)),
        draw(st.none() | st.sampled_from(STATES)),
    )


@st.composite
def takens(draw: st.DrawFn) -> Taken:
    days = st.dates(date(1900, 1, 1), date(2100, 12, 31))
    lo, hi = draw(st.none() | days), draw(st.none() | days)
    assume(lo is not None or hi is not None)
    if lo is not None and hi is not None:
        assume(lo < hi)
    return Taken(lo, hi)


VALUES = st.one_of(st.sampled_from(["Pictures/2024/*", "a b", "/x/(1)", 'q"', "ü/ß", "*.jpg", "x:y"]), st.text(min_size=1, max_size=8))
LEAVES = st.one_of(
    tags(),
    takens(),
    VALUES.map(PathGlob),
    VALUES.filter(lambda v: bool(tag_key(v))).map(Camera),
    *FACETS,
)


TREES = query_trees(LEAVES, max_leaves=8)


@given(TREES)
@settings(max_examples=400, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
def test_print_then_parse_gives_the_same_tree(tree: object) -> None:
    text = unparse(tree)
    assert parse(text) == tree, text


QUERY_CHARS = st.sampled_from(list(' "()-:*\\.<>=ORANDTdogcat0123456789tagkenpthsuy_/') + ["OR", "NOT", "AND", "taken:", "dog:", "ü", "\u00a0"])


@given(st.lists(QUERY_CHARS, max_size=30).map("".join) | st.text(max_size=30))
@settings(max_examples=1500)
@example('dog "x')
@example("\udcff")
def test_any_text_parses_or_fails_with_a_column(text: str) -> None:
    try:
        tree = parse(text)
    except QueryError as exc:
        assert 1 <= exc.col <= len(text) + 1
        return
    again = unparse(tree)
    assert parse(again) == tree
    assert unparse(parse(again)) == again  # printing is canonical


# -- SQL -----------------------------------------------------------------------------------------

INJECTIONS = ["'; DROP TABLE photo; --", 'x" OR 1=1 --', "Robert'); DELETE FROM tag;--", "?", "%", "_", "\\", "'", "\u202e"]


@given(TREES)
@settings(max_examples=300, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
def test_sql_text_never_contains_what_the_user_typed(tree: object) -> None:
    for suggestions in (False, True):
        for sql in (where_sql(tree, suggestions), search_sql(tree, sort="path", limit=5, suggestions=suggestions)):
            assert sql.text.count("?") == len(sql.params)
            # Only the module's own words and punctuation: anything typed went into params.
            residue = re.sub(r"'(gone)'", "", sql.text)
            assert "'" not in residue and '"' not in residue, sql.text


@pytest.mark.parametrize("value", INJECTIONS)
def test_injection_attempts_are_parameters(value: str) -> None:
    quoted = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    for text in (quoted, f"camera:{quoted}", f"path:{quoted}", f"tag:{quoted}:>0.5"):
        tree = parse(text)
        sql = search_sql(tree)
        if len(value) > 1:
            assert value not in sql.text
        assert sql.text.count("?") == len(sql.params)
        conn = sqlite3.connect(":memory:")
        # The statement compiles against the real schema and runs: the value is data.
        from tagd.index import schema

        conn.isolation_level = None
        schema.migrate(conn)
        assert conn.execute(sql.text, sql.params).fetchall() == []
        assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'photo'").fetchone() == (1,)


def test_every_field_has_an_example_in_the_help() -> None:
    from tagd.cli.queries import QUERY_HELP

    for name in FIELDS:
        assert f"{name}:" in QUERY_HELP
