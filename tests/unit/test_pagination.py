"""One page-token format and one max_results check for every paged MLflow route."""

from __future__ import annotations

import base64
import json

import pytest

from runstream.api.mlflow import pagination as pg
from runstream.schemas import constants as c
from runstream.schemas.errors import InvalidParameterValue


def message(token: str, bound: tuple[pg.Bound, ...] = ()) -> str:
    with pytest.raises(InvalidParameterValue) as exc:
        pg.decode(token, bound)
    return exc.value.message


def b64(obj: object) -> str:
    return base64.b64encode(json.dumps(obj).encode()).decode()


def test_offset_tokens_are_mlflows() -> None:
    token = pg.encode(30)
    assert json.loads(base64.b64decode(token)) == {"offset": 30}
    assert pg.decode(token) == pg.Cursor(30)
    assert pg.decode(None) == pg.decode("") == pg.Cursor(0)


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("abc", "Invalid page token, could not base64-decode"),
        ("é", "Invalid page token, could not base64-decode"),
        (base64.b64encode(b"nope").decode(), "Invalid page token, decoded value=b'nope'"),
        (b64({"other": 1}), "Invalid page token, parsed value={'other': 1}"),
        (b64([1]), "Invalid page token, parsed value=[1]"),
        (b64({"offset": 0}), "Invalid page token, parsed value={'offset': 0}"),
        (b64({"offset": "x"}), "Invalid page token, not stringable x"),
        (b64({"offset": -5}), "Invalid page token, parsed value={'offset': -5}"),
        (b64({"offset": 5, "after": 3}),
         "Invalid page token, parsed value={'offset': 5, 'after': 3}"),
    ],
)  # fmt: skip
def test_bad_tokens_get_mlflows_one_wording(token: str, expected: str) -> None:
    assert message(token) == expected


def test_offsets_as_mlflow_reads_them() -> None:
    assert pg.decode(b64({"offset": "40"})).offset == 40


def test_bound_tokens_keep_the_fields_before_the_offset_and_refuse_others() -> None:
    ids = pg.Bound("experiment_ids", ["1"], "Experiment IDs", "experiment IDs", verb="do")
    text = pg.Bound("filter_string", "name = 'a'", "Filter string", "filter string")
    token = pg.encode(10, (ids, text))
    assert list(json.loads(base64.b64decode(token))) == [
        "experiment_ids",
        "filter_string",
        "offset",
    ]
    assert pg.decode(token, (ids, text)).offset == 10
    other = pg.Bound("experiment_ids", ["2"], "Experiment IDs", "experiment IDs", verb="do")
    assert message(token, (other,)) == (
        "Experiment IDs in the page token do not match the requested experiment IDs. "
        "Expected: ['2']. Found: ['1']"
    )
    # An empty value and a missing one are the same request (MLflow's ``or None``).
    unset = pg.Bound("filter_string", None, "Filter string", "filter string")
    assert pg.decode(pg.encode(5, (pg.Bound("filter_string", "", "F", "f"),)), (unset,)).offset == 5


def test_keyset_tokens_carry_the_last_key() -> None:
    token = pg.encode(20, after=("model-a", 3))
    assert pg.decode(token) == pg.Cursor(20, ("model-a", 3))
    rows = [("a", 1), ("a", 2), ("b", 1)]
    shown, next_token = pg.page(rows, 0, 2, key=lambda row: row)
    assert list(shown) == rows[:2] and next_token is not None
    assert pg.decode(next_token) == pg.Cursor(2, ("a", 2))


def test_a_page_fetched_one_row_long_says_there_is_a_next() -> None:
    rows = list(range(11))
    page, token = pg.page(rows, 30, 10)
    assert list(page) == list(range(10)) and token is not None
    assert pg.decode(token).offset == 40
    assert pg.page(rows[:10], 30, 10) == (rows[:10], None)
    assert pg.page(rows, 0, None) == (rows, None)


def test_max_results_is_mlflows_check() -> None:
    assert pg.check_max_results(1) == 1
    assert pg.check_max_results(None, allow_null=True) is None
    with pytest.raises(InvalidParameterValue, match="It must be a positive integer"):
        pg.check_max_results(0)
    with pytest.raises(InvalidParameterValue, match="It must be a positive integer"):
        pg.check_max_results(None)
    with pytest.raises(InvalidParameterValue, match=f"at most {c.SEARCH_MAX_RESULTS_THRESHOLD}"):
        pg.check_max_results(c.SEARCH_MAX_RESULTS_THRESHOLD + 1)


def test_page_size_of_routes_without_mlflows_check() -> None:
    assert pg.check_page_size(100) == 100
    with pytest.raises(InvalidParameterValue) as exc:
        pg.check_page_size(0)
    assert exc.value.message == (
        "Invalid value 0 for parameter 'max_results' supplied: must be between 1 and 50000"
    )
