"""The filter syntax shared by runs, experiments and logged models, and an entity declared on it."""

from __future__ import annotations

import pytest

from runstream.api.mlflow import filter_grammar as g
from runstream.api.mlflow import logged_model_search as lms
from runstream.api.mlflow import search_filter as sf
from runstream.schemas.errors import InvalidParameterValue


def clauses(text: str, **kw: object) -> list[tuple[str, str, str | None, str | None]]:
    found = g.comparisons(text, and_required=bool(kw.get("and_required")))
    return [
        (c.identifier, c.comparator, c.value.text if c.value else None, c.list_text) for c in found
    ]


def test_clauses_as_written() -> None:
    assert clauses("metrics.`a b` >= -1.5 and tags.x LIKE 'y%'") == [
        ("metrics.`a b`", ">=", "-1.5", None),
        ("tags.x", "LIKE", "'y%'", None),
    ]
    assert clauses("run_id not in ('a', \"b\")  params.p IS NOT NULL") == [
        ("run_id", "NOT IN", None, "('a', \"b\")"),
        ("params.p", "IS NOT NULL", None, None),
    ]


@pytest.mark.parametrize(
    ("text", "expected", "fragment", "found"),
    [
        ("name = 'a' OR name = 'b'", g.SEPARATOR, "OR name = 'b'", "OR"),
        ("name = 'a' AND", g.IDENTIFIER, "", None),
        ("= 'a'", g.IDENTIFIER, "= 'a'", "="),
        ("name", g.COMPARATOR, "name", None),
        ("name IS 'a'", g.COMPARATOR, "name IS 'a'", "IS"),
        ("name =", g.VALUE, "name =", None),
        ("name = ,", g.VALUE, "name = ,", ","),
        ("name IN 'a'", g.LIST, "name IN 'a'", "'a'"),
        ("name IN ('a', b) AND x = 1", g.LIST, "name IN ('a', b", "('a', b)"),
    ],
)
def test_syntax_errors_say_what_was_expected(
    text: str, expected: str, fragment: str, found: str | None
) -> None:
    with pytest.raises(g.FilterSyntaxError) as exc:
        g.comparisons(text, and_required=True)
    assert (exc.value.expected, exc.value.fragment, exc.value.found) == (expected, fragment, found)


def test_and_may_be_left_out_or_repeated_only_where_mlflow_lets_it() -> None:
    text = "and params.x = 'a' and and params.y = 'b' params.z = 'c'"
    assert [c[0] for c in clauses(text)] == ["params.x", "params.y", "params.z"]
    with pytest.raises(g.FilterSyntaxError):
        g.comparisons(text, and_required=True)


def test_word_chars_are_the_entitys() -> None:
    assert [t.text for t in g.lex("tags.git-sha")] == ["tags", ".", "git", "-", "sha"]
    assert [t.text for t in g.lex("tags.git-sha", "-")] == ["tags", ".", "git-sha"]


def test_order_by_parts() -> None:
    assert g.order_by_parts("metrics.`a b` DESC") == ("metrics.a b", False)
    assert g.order_by_parts("name") == ("name", True)
    with pytest.raises(InvalidParameterValue, match="Invalid ordering key"):
        g.order_by_parts("name UP")


# A search worded as MLflow's SearchUtils declares what it may name and reuses the parser, as
# search_registered_models will (MLflow's SearchModelUtils: ``name`` and ``tags.<key>``).
REGISTERED_MODELS = sf.Vocabulary(
    entities={"tag": sf.TAG, "tags": sf.TAG, "attribute": sf.ATTRIBUTE},
    entity_names=(sf.TAG, sf.ATTRIBUTE),
    attributes=frozenset({"name"}),
    order_by_attributes=frozenset({"name", "creation_timestamp", "last_updated_timestamp"}),
    numeric_attributes=frozenset({"creation_timestamp", "last_updated_timestamp"}),
    list_attributes=("name",),
    rules={sf.TAG: sf.Rule(frozenset({"=", "!=", "LIKE", "ILIKE"}), frozenset({"=", "!="}))},
    string_attribute_rule=sf.Rule(sf.STRING_ATTRIBUTE_COMPARATORS, sf.STRING_ATTRIBUTE_COMPARATORS),
    numeric_attribute_rule=sf.Rule(
        sf.NUMERIC_ATTRIBUTE_COMPARATORS, sf.NUMERIC_ATTRIBUTE_COMPARATORS
    ),
    null_entities=(),
)


def test_an_entity_declares_its_identifiers_and_comparators() -> None:
    got = sf.parse_filter("name LIKE 'iris%' AND tags.team = 'ml'", REGISTERED_MODELS)
    assert got == (
        sf.Comparison(sf.ATTRIBUTE, "name", "LIKE", "iris%"),
        sf.Comparison(sf.TAG, "team", "=", "ml"),
    )
    assert sf.parse_filter("name IN ('a', 'b')", REGISTERED_MODELS)[0].value == ("a", "b")
    with pytest.raises(InvalidParameterValue, match="Invalid attribute key 'run_id'"):
        sf.parse_filter("run_id = 'x'", REGISTERED_MODELS)
    with pytest.raises(InvalidParameterValue, match="Invalid entity type 'metrics'"):
        sf.parse_filter("metrics.acc > 1", REGISTERED_MODELS)
    with pytest.raises(InvalidParameterValue, match="only supported for tags and params"):
        sf.parse_filter("tags.team IS NULL", REGISTERED_MODELS)
    order = sf.parse_order_by(["creation_timestamp DESC"], REGISTERED_MODELS)
    assert order == (sf.OrderBy(sf.ATTRIBUTE, "creation_timestamp", False),)


def test_logged_models_read_the_same_clauses_in_their_own_words() -> None:
    assert [(c.entity, c.key, c.value) for c in lms.parse_filter("tags.git-sha = abc-1")] == [
        ("tags", "git-sha", "abc-1")
    ]
    with pytest.raises(InvalidParameterValue) as exc:
        lms.parse_filter("name = 'a' AND")
    assert exc.value.message == "Invalid filter string: \"name = 'a' AND\". Expected an identifier."
    with pytest.raises(InvalidParameterValue) as exc:
        lms.parse_filter("name IN ('a', b)")
    assert exc.value.message.endswith("Invalid list of strings ('a', b).")
