"""Third-party scripts the pages load from a CDN: pinned versions with Subresource Integrity hashes.

The CSP's script-src names exactly these URLs, so adding a script here is the one place to do it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CdnScript:
    package: str
    version: str
    path: str
    integrity: str

    @property
    def url(self) -> str:
        return f"https://cdn.jsdelivr.net/npm/{self.package}@{self.version}/{self.path}"


HTMX = CdnScript(
    package="htmx.org",
    version="2.0.11",
    path="dist/htmx.min.js",
    integrity="sha384-2OatzQy1H+Zd/IIrjr1TcuDGqLXeHhbooAyJY1KdQMKnr4LZ22k31GBLdYKHmVjg",
)

CDN_SCRIPTS = (HTMX,)

# htmx settings that let the CSP go without 'unsafe-eval' and 'unsafe-inline', keep page HTML (and with it any
# secret on the page) out of localStorage, and swap error pages and form errors instead of dropping them.
HTMX_CONFIG = {
    "allowEval": False,
    "allowScriptTags": False,
    "includeIndicatorStyles": False,
    "historyCacheSize": 0,
    "selfRequestsOnly": True,
    "responseHandling": [
        {"code": "204", "swap": False},
        {"code": "[23]..", "swap": True},
        # A 4xx answer is a page meant for the person (a form with its errors, "not found"): swap it quietly.
        {"code": "4..", "swap": True, "error": False},
        {"code": "5..", "swap": True, "error": True},
    ],
}
