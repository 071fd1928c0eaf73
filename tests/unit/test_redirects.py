"""The `next` parameter may only name a path on this site."""

import pytest

from app.auth.redirects import safe_next


@pytest.mark.parametrize("target", ["/", "/account", "/keys?page=2#top", "/a/b%2F"])
def test_local_paths_are_kept(target):
    assert safe_next(target) == target


@pytest.mark.parametrize("target", [
    None, "", "account", "//evil.example", "///evil.example", "/\\evil.example", "\\/evil.example",
    "https://evil.example/", "javascript:alert(1)", "/\tevil", "/\x00", "/\x7f", "http:/evil", " /account",
])
def test_anything_else_is_refused(target):
    assert safe_next(target) is None
