"""Listing: filters as URL-encoded JSON, sorting, page sizes and page tokens."""

import json

import pytest

from localdsp.errors import InvalidInput
from localdsp.filters import Predicate, go_query_unescape, parse_filter

pytestmark = pytest.mark.integration

EXPERIMENTS = "/apis/v1beta1/experiments"
KEYS = ("id", "name", "created_at", "description")


def name_filter(value, op=1, field="stringValue", key="name"):
    return json.dumps({"predicates": [{"op": op, "key": key, field: value}]})


# ---------------------------------------------------------------- the filter parser


@pytest.mark.parametrize(
    "predicate",
    [
        {"op": 1, "key": "name", "stringValue": "x"},
        {"op": "EQUALS", "key": "name", "string_value": "x"},
        {"op": 1, "key": "name", "string_value": "x"},
    ],
)
def test_ops_by_number_or_name_and_fields_in_either_case(predicate):
    (parsed,) = parse_filter(json.dumps({"predicates": [predicate]}), KEYS)
    assert parsed == Predicate("name", "EQUALS", "string_value", "x")


def test_array_timestamp_and_integer_values():
    text = json.dumps(
        {
            "predicates": [
                {"op": "IN", "key": "name", "stringValues": {"values": ["a", "b"]}},
                {"op": 5, "key": "created_at", "timestampValue": "2024-01-01T00:00:00Z"},
                {"op": 6, "key": "created_at", "longValue": "1704067300"},
            ]
        }
    )
    assert parse_filter(text, KEYS) == (
        Predicate("name", "IN", "string_values", ("a", "b")),
        Predicate("created_at", "GREATER_THAN_EQUALS", "timestamp_value", 1704067200),
        Predicate("created_at", "LESS_THAN", "long_value", 1704067300),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "failed to parse valid filter from"),
        ('{"predicates": [{"op": "SOMETIMES", "key": "name"}]}', "failed to parse valid filter"),
        ('{"predicate": []}', "failed to parse valid filter"),
        (
            '{"predicates":[{"op":1,"key":"name","stringValue":"a","intValue":1}]}',
            "failed to parse",
        ),
        ("%zz", "failed to parse valid filter"),
        (name_filter("x", key="owner"), 'no support for filtering on unrecognized field "owner"'),
        (
            name_filter("x", op="IN"),
            "cannot use IN operator with scalar type *api.Predicate_StringValue",
        ),
        (
            name_filter({"values": ["x"]}, field="stringValues"),
            "cannot use scalar operator EQUALS on array type *api.Predicate_StringValues",
        ),
        (name_filter(3, op=9, field="intValue"), "cannot use non string value type"),
        (name_filter("x", op=4), "invalid predicate operation: 4"),
        ('{"predicates":[{"op":1,"key":"name"}]}', 'no value set for predicate on key "name"'),
    ],
)
def test_bad_filters_are_invalid_input_with_the_server_s_words(text, message):
    with pytest.raises(InvalidInput, match=message.replace("*", r"\*")):
        parse_filter(text, KEYS)


def test_the_filter_is_url_decoded_a_second_time():
    assert go_query_unescape("a+b%20c%2B") == "a b c+"
    with pytest.raises(ValueError, match="invalid URL escape"):
        go_query_unescape("100%")
    (parsed,) = parse_filter(name_filter("my+name"), KEYS)
    assert parsed.value == "my name"


@pytest.mark.parametrize(
    ("op", "value", "actual", "expected"),
    [
        ("EQUALS", "Demo", "demo", True),
        ("NOT_EQUALS", "a", "b", True),
        ("GREATER_THAN", 5, 6, True),
        ("LESS_THAN_EQUALS", 5, 6, False),
        ("IS_SUBSTRING", "EM", "demo", True),
        ("IN", ("x", "DEMO"), "demo", True),
        ("IN", (1, 2), 3, False),
    ],
)
def test_predicates_compare_like_the_database(op, value, actual, expected):
    assert Predicate("k", op, "f", value).matches(actual) is expected


# ---------------------------------------------------------------- over HTTP


@pytest.fixture
def experiments(localdsp):
    """25 experiments e00..e24 next to "Default", created in name order."""
    for number in range(25):
        localdsp.backend.create_experiment(f"e{number:02d}", f"about {number % 3}")
    return [f"e{number:02d}" for number in range(25)]


def names(response) -> list[str]:
    return [item["name"] for item in response.json.get("experiments", [])]


def test_page_size_defaults_to_20_and_tokens_walk_every_page(api, experiments):
    first = api("GET", EXPERIMENTS)
    assert len(names(first)) == 20
    assert first.json["total_size"] == 26
    second = api("GET", EXPERIMENTS, query={"page_token": first.json["next_page_token"]})
    assert names(first) + names(second) == ["Default", *experiments]
    assert "next_page_token" not in second.json


def test_page_sizes_are_capped_at_200_and_negative_is_a_400(api, localdsp):
    for number in range(205):
        localdsp.backend.create_experiment(f"x{number:03d}", "")
    assert len(names(api("GET", EXPERIMENTS, query={"page_size": 1000}))) == 200
    response = api("GET", EXPERIMENTS, query={"page_size": -1})
    assert response.status == 400
    assert response.json["details"][0]["error_message"] == (
        "The page size should be greater than 0. Got '\ufffd'"
    )


def test_sorting_by_field_and_direction(api, experiments):
    descending = api("GET", EXPERIMENTS, query={"sort_by": "name desc", "page_size": 3})
    assert names(descending) == ["e24", "e23", "e22"]
    token = descending.json["next_page_token"]
    page_two = api("GET", EXPERIMENTS, query={"page_token": token, "page_size": 3})
    assert names(page_two) == ["e21", "e20", "e19"]
    replayed = api(
        "GET", EXPERIMENTS, query={"page_token": token, "sort_by": "name desc", "page_size": 3}
    )
    assert names(replayed) == names(page_two)
    by_description = api("GET", EXPERIMENTS, query={"sort_by": "description", "page_size": 2})
    assert names(by_description) == ["e00", "e03"]


def test_a_token_replayed_with_other_criteria_or_garbled_is_a_400(api, experiments):
    token = api("GET", EXPERIMENTS, query={"page_size": 2}).json["next_page_token"]
    changed = api("GET", EXPERIMENTS, query={"page_token": token, "sort_by": "name desc"})
    assert changed.status == 400
    assert "page token does not match the supplied sort by" in changed.json["message"]
    garbled = api("GET", EXPERIMENTS, query={"page_token": "not-a-token"})
    assert garbled.status == 400
    assert garbled.json["details"][0]["error_message"] == "Invalid package token."


MISMATCH = (
    "page token does not match the supplied sort by and/or filtering criteria. Either specify "
    "the same criteria or leave the latter empty if page token is specified."
)


def test_a_re_sent_in_filter_never_matches_its_token_as_on_the_server(api, experiments):
    """The server compares with reflect.DeepEqual after the token's JSON round trip: an IN
    list (or a number) comes back with another Go type, so re-sending it is always a 400."""
    in_filter = name_filter({"values": experiments[:5]}, op="IN", field="string_values")
    first = api("GET", EXPERIMENTS, query={"filter": in_filter, "page_size": 2})
    token = first.json["next_page_token"]
    refused = api("GET", EXPERIMENTS, query={"page_token": token, "filter": in_filter})
    assert refused.status == 400
    assert refused.json == {
        "error": f"Failed to create list options: Invalid input error: {MISMATCH}",
        "code": 3,
        "message": f"Failed to create list options: Invalid input error: {MISMATCH}",
        "details": [
            {
                "@type": "type.googleapis.com/api.Error",
                "error_message": MISMATCH,
                "error_details": f"Failed to create list options: Invalid input error: {MISMATCH}",
            }
        ],
    }
    rest = api("GET", EXPERIMENTS, query={"page_token": token, "page_size": 3})
    assert names(first) + names(rest) == experiments[:5]
    newer = name_filter("2000-01-01T00:00:00Z", op=3, field="timestampValue", key="created_at")
    token = api("GET", EXPERIMENTS, query={"filter": newer, "page_size": 2}).json["next_page_token"]
    assert api("GET", EXPERIMENTS, query={"page_token": token, "filter": newer}).status == 400


def test_a_re_sent_string_filter_matches_but_the_sort_must_be_re_sent_with_it(api, experiments):
    about_1 = name_filter("about 1", key="description")
    first = api("GET", EXPERIMENTS, query={"filter": about_1, "page_size": 3})
    token = first.json["next_page_token"]
    again = api("GET", EXPERIMENTS, query={"page_token": token, "filter": about_1})
    assert again.status == 200
    assert len(names(first) + names(again)) == 8
    by_name = {"filter": about_1, "sort_by": "name desc", "page_size": 3}
    token = api("GET", EXPERIMENTS, query=by_name).json["next_page_token"]
    filter_only = api("GET", EXPERIMENTS, query={"page_token": token, "filter": about_1})
    assert filter_only.status == 400
    assert filter_only.json["details"][0]["error_message"] == MISMATCH
    sort_only = api("GET", EXPERIMENTS, query={"page_token": token, "sort_by": "name desc"})
    assert sort_only.status == 400


def test_an_empty_filter_is_still_a_filter_to_the_token(api, experiments):
    empty = json.dumps({"predicates": []})
    token = api("GET", EXPERIMENTS, query={"filter": empty, "page_size": 2}).json["next_page_token"]
    assert api("GET", EXPERIMENTS, query={"page_token": token, "filter": empty}).status == 200
    sort_only = api("GET", EXPERIMENTS, query={"page_token": token, "sort_by": "created_at"})
    assert sort_only.status == 400


def test_each_page_uses_its_own_page_size_not_the_first_one(api, experiments):
    token = api("GET", EXPERIMENTS, query={"page_size": 2}).json["next_page_token"]
    assert len(names(api("GET", EXPERIMENTS, query={"page_token": token}))) == 20
    assert len(names(api("GET", EXPERIMENTS, query={"page_token": token, "page_size": 5}))) == 5


def test_unknown_sort_fields_and_formats_are_400s(api):
    unknown = api("GET", EXPERIMENTS, query={"sort_by": "owner"})
    assert unknown.status == 400
    assert unknown.json["details"][0]["error_message"] == (
        'Invalid sorting field: "owner" on listable type Experiment'
    )
    assert api("GET", EXPERIMENTS, query={"sort_by": "name sideways"}).status == 400


def test_filters_over_http(api, experiments):
    def listed(filter_json):
        return names(api("GET", EXPERIMENTS, query={"filter": filter_json, "page_size": 100}))

    assert listed(name_filter("E07")) == ["e07"]
    assert listed(name_filter("about 1", key="description")) == [
        f"e{n:02d}" for n in range(1, 25, 3)
    ]
    in_filter = name_filter({"values": ["e01", "e02", "zz"]}, op="IN", field="string_values")
    assert listed(in_filter) == ["e01", "e02"]
    assert listed(name_filter("2", op="IS_SUBSTRING"))[:3] == ["e02", "e12", "e20"]
    both = json.dumps(
        {
            "predicates": [
                {"op": "IS_SUBSTRING", "key": "name", "stringValue": "e1"},
                {"op": "NOT_EQUALS", "key": "name", "stringValue": "e10"},
            ]
        }
    )
    assert listed(both) == [f"e{n}" for n in range(11, 20)]


def test_timestamp_filters_compare_seconds(api, experiments):
    after_2000 = name_filter("2000-01-01T00:00:00Z", op=3, field="timestampValue", key="created_at")
    assert len(names(api("GET", EXPERIMENTS, query={"filter": after_2000, "page_size": 50}))) == 26
    before = name_filter("2000-01-01T00:00:00Z", op=6, field="timestamp_value", key="created_at")
    assert api("GET", EXPERIMENTS, query={"filter": before}).json == {}


def test_filter_errors_over_http_are_400s(api):
    unknown = api("GET", EXPERIMENTS, query={"filter": name_filter("x", key="owner")})
    assert unknown.status == 400
    assert unknown.json["details"][0]["error_message"] == (
        'no support for filtering on unrecognized field "owner"'
    )
    broken = api("GET", EXPERIMENTS, query={"filter": "{"})
    assert broken.status == 400
    assert broken.json["details"][0]["error_message"].startswith(
        'failed to parse valid filter from "{"'
    )


def test_a_plus_in_a_filtered_name_never_matches(api, localdsp):
    localdsp.backend.create_experiment("a+b", "")
    assert api("GET", EXPERIMENTS, query={"filter": name_filter("a+b")}).json == {}
    localdsp.backend.create_experiment("a b", "")
    assert names(api("GET", EXPERIMENTS, query={"filter": name_filter("a+b")})) == ["a b"]


def test_an_empty_listing_is_an_empty_object(api):
    for path in ("pipelines", "runs", "jobs"):
        response = api("GET", f"/apis/v1beta1/{path}")
        assert (response.status, response.json) == (200, {}), path


def test_the_client_sees_none_for_an_empty_listing(kfp_client):
    listed = kfp_client.list_pipelines()
    assert (listed.pipelines, listed.total_size, listed.next_page_token) == (None, None, None)


@pytest.mark.parametrize("path", ["/apis/v1beta1/runs", "/apis/v1beta1/jobs", EXPERIMENTS])
@pytest.mark.parametrize(
    "key",
    [
        {"resource_reference_key.id": "e1"},
        {"resource_reference_key.type": "PIPELINE", "resource_reference_key.id": "p1"},
    ],
)
def test_a_reference_key_without_a_type_it_filters_by_is_a_400(api, path, key):
    """The server's ValidateFilter: an id sent without its type does not list everything."""
    refused = api("GET", path, query=key)
    assert refused.status == 400
    kind = key.get("resource_reference_key.type", "UNKNOWN_RESOURCE_TYPE")
    assert refused.json["details"][0]["error_message"] == f"Unsupported resource type: {kind}"
    if path != EXPERIMENTS:
        listed = api("GET", path, query={**key, "resource_reference_key.type": "EXPERIMENT"})
        assert listed.status == 200
