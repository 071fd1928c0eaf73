"""The scope catalogue, scope normalisation and the stored scope string."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.keys.scopes import (
    BUILT_IN,
    UnknownScopeError,
    from_text,
    normalise_scopes,
    parse_catalogue,
    to_text,
)

EXTRA = {"read:data": "Read the data", "write:data": "Change the data"}
CATALOGUE = {**BUILT_IN, **EXTRA}


def test_built_in_scopes_manage_keys():
    assert set(BUILT_IN) == {"keys:read", "keys:write"}
    assert all(isinstance(description, str) and description for description in BUILT_IN.values())


# -- parse_catalogue ------------------------------------------------------------------------------------------------

def test_catalogue_from_json_adds_to_the_built_in_scopes():
    catalogue = parse_catalogue(json.dumps(EXTRA))
    assert catalogue == CATALOGUE
    assert set(BUILT_IN) <= set(catalogue)


def test_catalogue_from_a_mapping_adds_to_the_built_in_scopes():
    assert parse_catalogue(EXTRA) == CATALOGUE


@pytest.mark.parametrize("value", ["{}", {}, " { } "])
def test_empty_catalogue_is_the_built_in_scopes(value):
    assert parse_catalogue(value) == BUILT_IN


def test_catalogue_is_a_new_dict_and_leaves_built_in_alone():
    before = dict(BUILT_IN)
    source = dict(EXTRA)
    catalogue = parse_catalogue(source)
    catalogue["sneaky"] = "added later"
    assert before == BUILT_IN
    assert "sneaky" not in parse_catalogue("{}")
    assert source == EXTRA


@pytest.mark.parametrize("name", [
    "a", "A", "0", "read:data", "billing.invoices_read", "v2-reports", "a" * 64, "x:y:z", "Z9._-:",
])
def test_good_scope_names(name):
    assert parse_catalogue({name: "ok"})[name] == "ok"
    assert parse_catalogue(json.dumps({name: "ok"}))[name] == "ok"


@pytest.mark.parametrize("name", [
    "", " ", "read data", " read", "read ", "-read", ":read", ".read", "_read", "a" * 65, "read/data", "read*",
    "réad", "read\n", "read,write", "读",
])
def test_bad_scope_names_are_refused(name):
    with pytest.raises(ValueError, match="bad entry"):
        parse_catalogue({name: "description"})
    with pytest.raises(ValueError, match="bad entry"):
        parse_catalogue(json.dumps({name: "description"}))


@pytest.mark.parametrize("description", [None, 1, 1.5, True, ["a"], {"text": "a"}])
def test_descriptions_must_be_text(description):
    with pytest.raises(ValueError, match="bad entry 'read:data'"):
        parse_catalogue(json.dumps({"read:data": description}))


@pytest.mark.parametrize("value", ["[]", '["read:data"]', '"read:data"', "1", "null", "true"])
def test_catalogue_must_be_a_json_object(value):
    with pytest.raises(ValueError, match="JSON object"):
        parse_catalogue(value)


@pytest.mark.parametrize("value", ["", "{", "read:data=Read", "{'read:data': 'Read'}"])
def test_catalogue_that_is_not_json_is_refused(value):
    with pytest.raises(ValueError):
        parse_catalogue(value)


# -- normalise_scopes -----------------------------------------------------------------------------------------------

def test_scopes_are_stripped_deduplicated_and_sorted():
    requested = ["write:data", " keys:read", "keys:read ", "read:data", "write:data", "", "   "]
    assert normalise_scopes(requested, CATALOGUE) == ("keys:read", "read:data", "write:data")


def test_no_scopes():
    assert normalise_scopes([], CATALOGUE) == ()
    assert normalise_scopes(["", " "], CATALOGUE) == ()


def test_normalise_accepts_any_iterable():
    assert normalise_scopes(iter(["read:data", "keys:write"]), CATALOGUE) == ("keys:write", "read:data")
    assert normalise_scopes({"read:data"}, CATALOGUE) == ("read:data",)


def test_unknown_scopes_are_refused_sorted_and_named():
    with pytest.raises(UnknownScopeError) as caught:
        normalise_scopes(["zeta:x", "read:data", "alpha:y", " zeta:x "], CATALOGUE)
    assert isinstance(caught.value, ValueError)
    assert caught.value.unknown == ["alpha:y", "zeta:x"]
    assert str(caught.value) == "Unknown scopes: alpha:y, zeta:x"


def test_one_unknown_scope_is_named_in_the_singular():
    with pytest.raises(UnknownScopeError) as caught:
        normalise_scopes(["read:data", "delete:everything"], CATALOGUE)
    assert caught.value.unknown == ["delete:everything"]
    assert str(caught.value) == "Unknown scope: delete:everything"


@pytest.mark.parametrize("scope", ["Read:Data", "read:data:extra", "read", "keys:read keys:write"])
def test_scopes_must_match_the_catalogue_exactly(scope):
    with pytest.raises(UnknownScopeError) as caught:
        normalise_scopes([scope], CATALOGUE)
    assert caught.value.unknown == [scope]


def test_scopes_outside_this_catalogue_are_unknown_even_if_built_in_elsewhere():
    with pytest.raises(UnknownScopeError):
        normalise_scopes(["read:data"], BUILT_IN)


# -- to_text / from_text --------------------------------------------------------------------------------------------

def test_to_text_is_a_sorted_space_separated_string():
    assert to_text(["write:data", "keys:read", "write:data"]) == "keys:read write:data"
    assert to_text([]) == ""


def test_from_text():
    assert from_text("keys:read write:data") == ("keys:read", "write:data")
    assert from_text("  keys:read \n write:data ") == ("keys:read", "write:data")
    assert from_text("") == ()
    assert from_text(None) == ()


def test_round_trip_of_normalised_scopes():
    scopes = normalise_scopes(["write:data", "keys:read", "read:data", "keys:write"], CATALOGUE)
    assert from_text(to_text(scopes)) == scopes
    assert from_text(to_text(())) == ()


SCOPE_NAME = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9:._-]{0,63}", fullmatch=True)


@settings(max_examples=100, deadline=None, database=None)
@given(names=st.lists(SCOPE_NAME, max_size=10))
def test_round_trip_for_any_catalogue(names):
    catalogue = parse_catalogue(json.dumps({name: f"about {name}" for name in names}))
    scopes = normalise_scopes([f" {name} " for name in names], catalogue)
    assert scopes == tuple(sorted(set(names)))
    assert from_text(to_text(scopes)) == scopes
