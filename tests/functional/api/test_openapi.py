"""The OpenAPI document at /api/v1/openapi.json: it is valid OpenAPI 3.1, it agrees with the app's routes, it
documents every refusal, and the API keeps to it when schemathesis fuzzes every operation in-process."""

from __future__ import annotations

import re

import pytest
import schemathesis
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV31SpecValidator
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.config import SchemathesisConfig

from app.api.openapi import build_document
from app.audit.service import Actor
from app.extensions import db
from app.keys import verifiers
from app.keys.models import ApiKey
from tests.functional.keyhelpers import add_user, bearer, flush, new_key

OPENAPI = "/api/v1/openapi.json"
VERIFY = "/api/v1/keys/verify"
BASE = "/api/v1"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
ERROR_SCHEMA = "#/components/schemas/Error"
FUZZING_SCOPES = ("keys:read", "keys:write", "read:data", "write:data")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]
# Bounded for a 2-core machine: a few dozen generated requests per operation, the same ones every run.
MAX_EXAMPLES = 25
SEED = 20240917


@pytest.fixture
def document(client) -> dict:
    return client.get(OPENAPI).get_json()


def operations(document: dict):
    """(METHOD, full path, operation) for every operation in the document."""
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                yield method.upper(), BASE + path, item[method]


def resolve(document: dict, node: dict) -> dict:
    """Follow local $refs (#/components/...) until a real object."""
    while "$ref" in node:
        target = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


# -- the document itself ------------------------------------------------------------------------------------------

def test_the_document_is_public_json_and_valid_openapi_3_1(client):
    response = client.get(OPENAPI)  # no key
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    document = response.get_json()
    assert document == build_document()
    assert document["openapi"].startswith("3.1.")
    validate(document, cls=OpenAPIV31SpecValidator)


def test_bearer_is_the_global_security_scheme_and_only_the_document_itself_is_public(document):
    schemes = document["components"]["securitySchemes"]
    assert schemes == {"bearerAuth": {**schemes["bearerAuth"], "type": "http", "scheme": "bearer"},
                       "verifierAuth": {**schemes["verifierAuth"], "type": "http", "scheme": "bearer"}}
    assert document["security"] == [{"bearerAuth": []}]
    public = [(method, path) for method, path, operation in operations(document) if operation.get("security") == []]
    assert public == [("GET", OPENAPI)]
    by_scheme = {}
    for method, path, operation in operations(document):
        for requirement in operation.get("security", [{"bearerAuth": []}]) or []:
            by_scheme.setdefault(tuple(requirement), []).append(f"{method} {path}")
    # The verification API alone takes a verifier credential; every other operation an API key.
    assert by_scheme[("verifierAuth",)] == [f"POST {VERIFY}"]
    assert set(by_scheme) == {("bearerAuth",), ("verifierAuth",)}


def _uses_verifier(operation: dict) -> bool:
    return any("verifierAuth" in requirement for requirement in operation.get("security", []))


RULE_VARIABLE = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?\w+>")  # <name>, <int:name>, <int(min=1):name>
CONVERTER_TYPES = {None: "string", "default": "string", "string": "string", "path": "string", "uuid": "string",
                   "int": "integer", "float": "number"}


def _rule_shape(rule) -> tuple[str, list[str]]:
    """A Flask rule as a path with `{}` for each variable, and the JSON type each variable converts to, in order."""
    types = [CONVERTER_TYPES[match.group(1)] for match in RULE_VARIABLE.finditer(rule.rule)]
    return RULE_VARIABLE.sub("{}", rule.rule), types


def _documented_shape(document: dict, path: str, item: dict, operation: dict) -> tuple[str, list[str]]:
    parameters = [resolve(document, parameter) for parameter in item.get("parameters", [])
                  + operation.get("parameters", [])]
    types = {parameter["name"]: parameter["schema"]["type"] for parameter in parameters if parameter["in"] == "path"}
    names = re.findall(r"\{([^{}]+)\}", path)
    return re.sub(r"\{[^{}]+\}", "{}", path), [types[name] for name in names]


def _documented_scopes(document: dict, operation: dict) -> list[str] | None:
    """The key scopes the operation's security requirement names; None when it is public or takes no API key."""
    requirements = [requirement for requirement in operation.get("security", document["security"])
                    if "bearerAuth" in requirement]
    return sorted(scope for requirement in requirements for scope in requirement["bearerAuth"]) if requirements \
        else None


def test_the_document_and_the_url_map_agree(app, document):
    """Every route under /api/v1 is documented with each of its methods, and every documented operation is routed,
    with the same path parameter types and the scopes its @require_api_key asks for. Both sides are read from the
    app and the document, not listed by hand."""
    routed = {}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(BASE + "/") or rule.endpoint.endswith("static"):
            continue
        path, types = _rule_shape(rule)
        scopes = getattr(app.view_functions[rule.endpoint], "required_scopes", None)  # set by @require_api_key
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routed[(method, path)] = (types, None if scopes is None else sorted(scopes))
    documented = {}
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                shape, types = _documented_shape(document, BASE + path, item, item[method])
                documented[(method.upper(), shape)] = (types, _documented_scopes(document, item[method]))
    assert sorted(routed) == sorted(documented), (
        f"routed, not documented: {sorted(set(routed) - set(documented))}; "
        f"documented, not routed: {sorted(set(documented) - set(routed))}")
    assert routed == documented  # the same parameter types and scopes


def test_every_operation_documents_its_refusals_with_the_error_schema(document):
    for method, path, operation in operations(document):
        label = f"{method} {path}"
        responses = {status: resolve(document, response) for status, response in operation["responses"].items()}
        errors = {status for status, response in responses.items() if status[0] in "45"
                  and _uses_error_schema(response)}
        assert errors, f"{label} documents no error response with the Error schema"
        assert errors == {status for status in responses if status[0] in "45"}, f"{label}: an error without Error"
        expected = {"405"}
        if _uses_verifier(operation):
            expected |= {"401", "503"}  # no valid verifier credential; the database down
        elif operation.get("security") != []:
            expected |= {"400", "401", "403", "429", "503"}  # key in the URL, and what the key decorator refuses
        if "requestBody" in operation:
            expected |= {"400", "415", "422"}
        if "{key_id}" in path:
            expected |= {"404"}
        assert expected <= errors, f"{label} lacks {sorted(expected - errors)}"
        if "401" in errors:
            assert responses["401"]["headers"]["WWW-Authenticate"]["required"] is True
        if "429" in errors:
            headers = responses["429"]["headers"]
            assert all(headers[name]["required"] for name in ("Retry-After", "RateLimit", "RateLimit-Policy"))


def _uses_error_schema(response: dict) -> bool:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return schema.get("$ref") == ERROR_SCHEMA or any(part.get("$ref") == ERROR_SCHEMA
                                                     for part in schema.get("allOf", []))


def test_api_key_schema_is_closed_so_a_leaked_field_breaks_conformance(document):
    api_key = document["components"]["schemas"]["ApiKey"]
    assert api_key["additionalProperties"] is False
    assert set(api_key["required"]) == set(api_key["properties"])
    assert not {"secret", "secret_hash", "previous_secret_hash", "user_id", "owner"} & set(api_key["properties"])
    with_secret = document["components"]["schemas"]["ApiKeyWithSecret"]
    assert with_secret["additionalProperties"] is False


# -- refusals answered as documented -------------------------------------------------------------------------------

@pytest.fixture
def api(app):
    """The app (quiet: usage is flushed only when asked) with one user and a key holding every scope."""
    user_id = add_user(app)
    key_id, token = new_key(app, user_id, scopes=FUZZING_SCOPES, days=365)
    return app, user_id, key_id, token


def _case(schema, method: str, path: str, key_id: int, **kwargs):
    operation = schema[path][method]
    if "{key_id}" in path:
        kwargs["path_parameters"] = {"key_id": key_id}
    body = operation.definition.raw.get("requestBody")
    if body and body.get("required"):
        kwargs.setdefault("body", {"id": key_id} if method == "DELETE" else {"name": "a name"})
        kwargs["media_type"] = "application/json"
    return operation.Case(**kwargs)


def _refusals(app, key_id: int, headers: dict, query: dict | None = None) -> dict[str, tuple[int, str]]:
    """Call every guarded operation with these headers; validate each answer against the document and return
    {operation: (status, error code or None)}."""
    schema = schemathesis.openapi.from_wsgi(OPENAPI, app)
    seen = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.definition.raw.get("security") == [] or _uses_verifier(operation.definition.raw):
            continue  # public, or the verification API (tests/functional/verification/test_verify_api.py)
        case = _case(schema, operation.method.upper(), operation.path, key_id, headers=headers, query=query)
        response = case.call()
        case.validate_response(response, checks=CHECKS)
        seen[operation.label] = (response.status_code, response.json().get("error"))
    return seen


def test_refusals_of_the_key_decorator_are_answered_as_documented(api):
    app, user_id, key_id, token = api
    assert set(_refusals(app, key_id, {}).values()) == {(401, "missing_token")}
    assert set(_refusals(app, key_id, bearer("kf_" + "x" * 33)).values()) == {(401, "invalid_token")}
    assert set(_refusals(app, key_id, bearer(token), {"api_key": token}).values()) == {(400, "key_in_url")}
    _, weak = new_key(app, user_id, scopes=("read:data",))
    answers = _refusals(app, key_id, bearer(weak))
    assert {label for label, answer in answers.items() if answer == (403, "insufficient_scope")} == {
        label for label in answers if not label.startswith(("GET /scopes", "GET /whoami"))}
    assert answers["GET /scopes"] == answers["GET /whoami"] == (200, None)  # any valid key may call them
    _, elsewhere = new_key(app, user_id, scopes=FUZZING_SCOPES, allowed_ips=["203.0.113.0/24"])
    assert set(_refusals(app, key_id, bearer(elsewhere)).values()) == {(403, "ip_not_allowed")}


# Values an integer input must refuse, each the way the document says (422 naming the field; 404 for a path id).
NOT_WHOLE_NUMBERS = ("abc", "1.5", "-1", "0x10", "\u00b2", "1e3", "99999999999999999999999")


def test_numbers_in_the_url_that_are_not_whole_numbers_in_range_are_refused_as_documented(api):
    """Every integer query parameter in the document, and the key id in the path, given text that is not a whole
    number in range: never a server error, always an answer the document lists."""
    app, _, key_id, token = api
    schema = schemathesis.openapi.from_wsgi(OPENAPI, app)
    tried = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        raw = operation.definition.raw
        method, path = operation.method.upper(), operation.path
        for parameter in raw.get("parameters", []):
            if parameter["in"] != "query" or parameter["schema"]["type"] != "integer":
                continue
            for value in NOT_WHOLE_NUMBERS:
                case = _case(schema, method, path, key_id, headers=bearer(token), query={parameter["name"]: value})
                response = case.call()
                case.validate_response(response, checks=CHECKS)
                assert response.status_code == 422, f"{method} {path}?{parameter['name']}={value!r}"
                assert parameter["name"] in response.json()["fields"]
                tried += 1
        if "{key_id}" in path:
            for value in ("9223372036854775808", "0", "abc"):  # past int64, below 1, not a number
                case = _case(schema, method, path, key_id, headers=bearer(token))
                case.path_parameters = {"key_id": value}
                response = case.call()
                case.validate_response(response, checks=CHECKS)
                assert response.status_code == 404, f"{method} {path} with id {value!r}"
                tried += 1
    assert tried, "the document has no integer inputs in the URL to try"


def test_a_rate_limited_key_is_answered_with_the_documented_headers(api):
    app, user_id, key_id, _ = api
    _, limited = new_key(app, user_id, scopes=FUZZING_SCOPES, rate_limit=1)
    schema = schemathesis.openapi.from_wsgi(OPENAPI, app)
    whoami = schema["/whoami"]["GET"].Case(headers=bearer(limited))
    first = whoami.call()
    whoami.validate_response(first, checks=CHECKS)
    assert first.status_code == 200 and first.headers["ratelimit-policy"] == ['"per-key";q=1;w=60']
    second = whoami.call()
    whoami.validate_response(second, checks=CHECKS)
    assert second.status_code == 429 and second.json()["error"] == "rate_limited"


# -- schemathesis, in-process -------------------------------------------------------------------------------------

# Columns that decide whether a key is accepted. The fuzzer's own key is put back to its first state after every
# call: a generated DELETE, rotate, PATCH (allowed_ips, rate_limit, disabled), PUT or renew may land on it, and not
# only through its plain id (the route's int converter also takes "01", or digits of other scripts), so keeping ids
# away from it could never be complete. Restoring the row lets schemathesis test those operations on it too.
KEY_STATE = ("secret_hash", "previous_secret_hash", "previous_secret_expires_at", "display_start", "scope_text",
             "expires_at", "revoked_at", "revoked_reason", "disabled", "suspended_until", "allowed_ip_text",
             "rate_limit", "remaining_uses")


@pytest.fixture
def fuzzing(api):
    """The app, the key schemathesis sends, and what to do after each call: write the buffered usage (so answers
    show real counts and last-use times) and put the key back as it was."""
    app, user_id, key_id, token = api
    for number in range(5):  # other keys of the same owner, for the operations on {id} to find
        new_key(app, user_id, name=f"target {number}", scopes=("read:data",), days=10 * (number + 1))
    with app.app_context():
        key = db.session.get(ApiKey, key_id)
        first_state = {column: getattr(key, column) for column in KEY_STATE}
        db.session.remove()

    def after_call() -> None:
        flush(app)
        with app.app_context():
            db.session.execute(sa.update(ApiKey).where(ApiKey.id == key_id).values(**first_state))
            db.session.commit()
            db.session.remove()

    with app.app_context():
        _, credential = verifiers.create("fuzzing-service", actor=Actor.cli())
    return app, bearer(token), bearer(credential), after_call


# Generated from the document the route serves (a test above proves they are the same), one test per operation.
# The key is sent by the test, so schemathesis is told not to make up Authorization headers of its own.
fuzzed = schemathesis.openapi.from_dict(build_document(), config=SchemathesisConfig.from_dict({
    "seed": SEED,
    "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none",
                   "with-security-parameters": False},
}))


@fuzzed.parametrize()
@settings(max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_the_api_keeps_to_its_document(case, fuzzing):
    app, key_headers, verifier_headers, after_call = fuzzing
    headers = verifier_headers if _uses_verifier(case.operation.definition.raw) else key_headers
    try:
        response = case.call_and_validate(app=app, headers=headers, checks=CHECKS)
        # Every request carries a valid key (or verifier credential): a 401 would mean the fuzzing lost it and tests
        # nothing more.
        assert response.status_code != 401, response.text
    finally:
        after_call()
