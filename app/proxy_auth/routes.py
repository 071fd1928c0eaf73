"""/forward-auth: the endpoint reverse proxies ask before they pass a request on (nginx `auth_request`, Caddy
`forward_auth`, Traefik `ForwardAuth`, Envoy `ext_authz` as an HTTP service), each as it calls it: any method, any
sub-path.

- The proxy authenticates with its verifier credential in `X-Keyfob-Verifier` (the client's own `Authorization`
  header carries the key, so the credential needs another).
- The original request: its method from `X-Forwarded-Method` (Caddy, Traefik) or `X-Original-Method` (our nginx
  recipe), else this request's own (Envoy); its URI from `X-Forwarded-Uri`, `X-Original-URI`, else the sub-path
  after /forward-auth (Envoy's path prefix).
- The key from `Authorization: Bearer` or `X-API-Key`; the client's address from `X-Forwarded-For` as far as
  TRUSTED_PROXIES allows (ProxyFix), so the key's allowlist sees the client, never the proxy.
- The scopes come from the rules file (FORWARD_AUTH_RULES); a path no rule matches is refused unless
  FORWARD_AUTH_UNMATCHED is `any-key`.

Allowed: 200 with the identity in `X-Keyfob-*` headers for the upstream. Refused: the decorator's own 401, 403 and
429 (with Retry-After and the RateLimit fields), and `X-Keyfob-Code` saying why. nginx turns any answer but 2xx, 401
and 403 into a 500, so `?for=nginx` answers a rate-limited key with 403 and `X-Keyfob-Status: 429`, which the nginx
recipe turns back into a 429 for the client (docs/proxies/nginx.conf).
"""

from __future__ import annotations

from urllib.parse import quote

from flask import Blueprint, current_app, request

from app.api.decorator import rate_limit_headers, refusal
from app.api.verify_routes import CODES, refuse_verifier
from app.bearer import bearer_token
from app.errors import error_response
from app.extensions import csrf
from app.keys import verification, verifiers
from app.metrics import count_verification
from app.proxy_auth.rules import match, normalised_path

bp = Blueprint("proxy_auth", __name__, url_prefix="/forward-auth")
csrf.exempt(bp)

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
VERIFIER_HEADER = "X-Keyfob-Verifier"
MAX_URI_LENGTH = 8192


def _original() -> tuple[str, str]:
    environ = request.environ  # the proxy's headers straight from the environ: this runs for every request it guards
    method = environ.get("HTTP_X_FORWARDED_METHOD") or environ.get("HTTP_X_ORIGINAL_METHOD") or request.method
    uri = environ.get("HTTP_X_FORWARDED_URI") or environ.get("HTTP_X_ORIGINAL_URI")
    if uri is None:
        # request.path is percent-decoded already and match() decodes again: quoted back, %252e%252e stays the
        # segment `%2e%2e` the service will read, instead of becoming `..` for the rules.
        sub_path = quote(request.path.removeprefix(bp.url_prefix)) or "/"
        query = request.query_string.decode("latin-1")
        uri = sub_path + ("?" + query if query else "")
    return method.strip().upper()[:16], uri[:MAX_URI_LENGTH]


def _presented_key() -> str | None:
    return bearer_token() or (request.headers.get("X-API-Key") or "").strip() or None


def _for_nginx(response):
    """nginx's auth_request passes 401 and 403 through and makes anything else a 500: say 429 in a header."""
    if request.args.get("for") == "nginx" and response.status_code == 429:
        response.status_code = 403
        response.headers["X-Keyfob-Status"] = "429"
    return response


@bp.route("", methods=METHODS, strict_slashes=False)
@bp.route("/<path:sub_path>", methods=METHODS)
def forward_auth(sub_path: str = ""):
    """Answer a reverse proxy: may this request through?"""
    verifier = verifiers.authenticate(request.headers.get(VERIFIER_HEADER, "").strip() or None)
    if verifier is None:
        return refuse_verifier()
    method, uri = _original()
    rule = match(current_app.config["FORWARD_AUTH_RULES"], method, uri)
    if rule is None and current_app.config["FORWARD_AUTH_UNMATCHED"] != "any-key":
        response = error_response(403, "no_rule", f"No forward-auth rule covers {method} on this path, so Keyfob "
                                                  "refuses it. Add one to the rules file (FORWARD_AUTH_RULES).")
        response.headers["X-Keyfob-Code"] = "NO_RULE"
        return response
    key = _presented_key()
    if key is None:
        response = error_response(401, "missing_token", "Send your API key in the Authorization header: "
                                                        "Authorization: Bearer <key>.",
                                  headers={"WWW-Authenticate": 'Bearer realm="keyfob"'})
        response.headers["X-Keyfob-Code"] = "MISSING"
        return response
    result = verification.verify(key, rule.scopes if rule else (), request.remote_addr,
                                 request.headers.get("User-Agent"), verifier_id=verifier.id, method=method,
                                 path=normalised_path(uri))
    count_verification(result.outcome, via=verifier.name)
    if not result.ok:
        response = refusal(result)
        response.headers["X-Keyfob-Code"] = CODES[result.outcome]
        return _for_nginx(response)
    found = result.key
    identity = [
        ("X-Keyfob-Key-Id", "" if found.id is None else str(found.id)),
        ("X-Keyfob-Key-Start", found.display_start),
        ("X-Keyfob-User-Id", "" if found.user_id is None else str(found.user_id)),
        ("X-Keyfob-Scopes", " ".join(found.scopes)),
        ("X-Keyfob-Code", "VALID"),
    ]
    if result.rate_limit is not None:
        identity.extend(rate_limit_headers(result.rate_limit).items())
    # A new response has none of these: added, not set (a set looks for each one first, on every check).
    return current_app.response_class(status=200, headers=identity)
