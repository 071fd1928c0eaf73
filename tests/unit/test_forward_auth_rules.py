"""The forward-auth rules file (app/proxy_auth/rules.py): parsing, matching and how request paths are compared."""

from __future__ import annotations

import pytest

from app.proxy_auth.rules import RulesError, match, normalised_path, parse_rules

CATALOGUE = ("read:data", "write:data", "keys:read")
RULES = parse_rules("""
# comments and blank lines are ignored

GET,HEAD  /invoices/**        read:data   # a trailing comment
POST      /invoices           write:data
PUT       /invoices/*         read:data write:data
*         /status             -
GET       /users/*/profile    read:data
GET       /files/*.pdf        read:data
GET       /                   -
""", CATALOGUE)


@pytest.mark.parametrize(("method", "uri", "line", "scopes"), [
    ("GET", "/invoices", 4, ("read:data",)),  # ** matches no segment too
    ("HEAD", "/invoices/7/lines", 4, ("read:data",)),
    ("get", "/invoices/7?page=2#top", 4, ("read:data",)),
    ("POST", "/invoices", 5, ("write:data",)),
    ("PUT", "/invoices/7", 6, ("read:data", "write:data")),
    ("DELETE", "/status", 7, ()),
    ("GET", "/users/ada/profile", 8, ("read:data",)),
    ("GET", "/files/report.pdf", 9, ("read:data",)),
    ("GET", "/", 10, ()),
    ("GET", "http://billing.internal/invoices/1", 4, ("read:data",)),  # an absolute URI
])
def test_the_first_matching_rule_gives_the_scopes(method, uri, line, scopes):
    rule = match(RULES, method, uri)
    assert (rule.line, rule.scopes) == (line, scopes)


@pytest.mark.parametrize(("method", "uri"), [
    ("POST", "/invoices/7"), ("PUT", "/invoices/7/lines"), ("GET", "/users/a/b/profile"),
    ("GET", "/files/report.pdf.exe"), ("GET", "/invoicesXYZ"), ("DELETE", "/"), ("GET", "/public/../admin"),
])
def test_a_request_no_rule_covers_matches_none(method, uri):
    assert match(RULES, method, uri) is None


@pytest.mark.parametrize(("uri", "path"), [
    ("/a/./b/../c?x=//y", "/a/c"), ("//invoices//2", "/invoices/2"), ("/%2e%2e/admin", "/admin"), ("/..", "/"),
    ("", "/"), ("/%69nvoices", "/invoices"), ("https://h/x/y?z", "/x/y"), ("/a%2Fb", "/a/b"),
])
def test_paths_are_compared_decoded_and_resolved_so_no_spelling_goes_round_a_rule(uri, path):
    assert normalised_path(uri) == path


@pytest.mark.parametrize(("text", "message"), [
    ("GET /x", "line 1: write `METHODS PATH SCOPES`"),
    ("\n# c\nG?T /x read:data", "line 3: 'G?T' is not a list of methods"),
    ("GET,,POST /x read:data", "line 1: 'GET,,POST' is not a list of methods"),
    ("GET x read:data", "line 1: 'x' is not a path pattern"),
    ("GET /a**b read:data", "line 1: '/a**b' is not a path pattern"),
    ("GET /x no:such", "line 1: unknown scope 'no:such' (not in API_SCOPES)"),
    ("GET /x read:data wr!te", "line 1: unknown scope 'wr!te'"),
])
def test_a_bad_line_is_named(text, message):
    with pytest.raises(RulesError) as refused:
        parse_rules(text, CATALOGUE)
    assert str(refused.value).startswith(message)


def test_an_empty_file_has_no_rules():
    assert parse_rules("# nothing yet\n\n", CATALOGUE) == ()
