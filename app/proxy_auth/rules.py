"""The forward-auth rules file: which scopes each upstream route needs, written by the operator, so a route added to a
service is guarded without code. Pure parsing and matching; the file is read once, at start-up.

One rule a line, the first that matches wins; `#` starts a comment:

    # methods   path pattern       scopes (all needed; `-` for any valid key)
    GET,HEAD    /invoices/**       read:data
    POST        /invoices          write:data
    *           /status            -

Methods are names separated by commas, or `*` for any. In a pattern `*` matches within one path segment and `**` any
number of whole segments (none included); everything else matches itself. Paths are compared after percent-decoding
and resolving `.` and `..`, so `/public/../admin` is `/admin`.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

METHOD = re.compile(r"^[A-Z]+$")
SCOPE = re.compile(r"^[A-Za-z0-9:._-]+$")


class RulesError(ValueError):
    """The rules file is wrong; the message names the line."""


@dataclass(frozen=True)
class Rule:
    methods: frozenset[str] | None  # None: any method
    pattern: str
    scopes: tuple[str, ...]
    line: int
    regex: re.Pattern

    def matches(self, method: str, path: str) -> bool:
        return (self.methods is None or method in self.methods) and self.regex.fullmatch(path) is not None


def _regex(pattern: str) -> re.Pattern:
    parts = []
    for segment in pattern.strip("/").split("/") if pattern != "/" else []:
        if segment == "**":
            parts.append("(?:/[^/]+)*")
        else:
            parts.append("/" + "[^/]*".join(re.escape(piece) for piece in segment.split("*")))
    return re.compile("".join(parts) or "/")


def parse_rules(text: str, catalogue: Iterable[str]) -> tuple[Rule, ...]:
    """The rules in `text`, or RulesError naming the first bad line. Scopes must be in the catalogue."""
    known = set(catalogue)
    rules = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) < 3:
            raise RulesError(f"line {number}: write `METHODS PATH SCOPES` (`-` for any valid key), not {line!r}")
        methods_text, pattern, scope_fields = fields[0], fields[1], fields[2:]
        methods = None
        if methods_text != "*":
            methods = frozenset(method.strip().upper() for method in methods_text.split(","))
            if not all(METHOD.match(method) for method in methods):
                raise RulesError(f"line {number}: {methods_text!r} is not a list of methods such as GET,HEAD or *")
        if not pattern.startswith("/") or any("**" in segment and segment != "**" for segment in pattern.split("/")):
            raise RulesError(f"line {number}: {pattern!r} is not a path pattern such as /invoices/** or /users/*")
        scopes = () if scope_fields == ["-"] else tuple(scope_fields)
        unknown = [scope for scope in scopes if not SCOPE.match(scope) or scope not in known]
        if unknown:
            raise RulesError(f"line {number}: unknown scope {unknown[0]!r} (not in API_SCOPES)")
        rules.append(Rule(methods, pattern, scopes, number, _regex(pattern)))
    return tuple(rules)


def normalised_path(uri: str) -> str:
    """The path of a request URI as the rules compare it: no query, percent-decoded, repeated slashes as one, `.`
    and `..` resolved. An absolute URI (`http://host/path`) gives its path."""
    if uri.startswith(("http://", "https://")):
        uri = urlsplit(uri).path
    path = unquote(uri.split("?", 1)[0].split("#", 1)[0])
    return posixpath.normpath("/" + re.sub("/+", "/", path).lstrip("/"))


def match(rules: Iterable[Rule], method: str, uri: str) -> Rule | None:
    """The first rule for this method and URI, or None."""
    path = normalised_path(uri)
    return next((rule for rule in rules if rule.matches(method.upper(), path)), None)
