"""The page around every view: inline CSS and JS, the Content-Security-Policy, escaping, links.

Nothing is fetched from anywhere: the CSS and the live-refresh script are inline and allowed
by their SHA-256 hashes in a strict Content-Security-Policy (no ``unsafe-inline``, no other
origin), so even a string that escaped escaping could not run or load anything. The page
works with JavaScript off; the script only re-fetches the same URL with ``If-None-Match`` and
swaps in the new ``<main>`` when the server's ETag (derived from the refs) changed.

Links are relative and flat (``commit-<sha>.html``), so the same HTML works served and as
static files (`git jobs report --html`).
"""

from __future__ import annotations

import base64
import hashlib
import html
from urllib.parse import quote, urlsplit

from ..text import safe

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1f2328;
background:#fff}
header{background:#24292f;color:#fff;padding:8px 16px}
header a{color:#fff;text-decoration:none;font-weight:600}
main{padding:12px 16px;max-width:1200px}
a{color:#0969da}h1{font-size:20px;margin:8px 0}h2{font-size:16px;margin:16px 0 8px}
table{border-collapse:collapse;margin:8px 0}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}code,.sha{font-family:ui-monospace,SFMono-Regular,Menlo,monospace}
.muted{color:#656d76}.small{font-size:12px}
.st{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;font-weight:600;
background:#eaeef2;color:#1f2328}
.st-succeeded{background:#dafbe1;color:#116329}
.st-failed,.st-error,.st-timed_out,.st-cancelled,.st-not_built,.st-lost{background:#ffebe9;color:#a40e26}
.st-running,.st-pending,.st-queued{background:#fff8c5;color:#7d4e00}
.st-expected{background:#ddf4ff;color:#0a3069}.st-required{background:#eaeef2;color:#24292f}
.st-unservable{background:#ffebe9;color:#a40e26}
.st-skipped,.st-none{background:#eaeef2;color:#57606a}.st-flaky{background:#fbefff;color:#6e40c9}
.warn{border:1px solid #d4a72c;background:#fff8c5;padding:8px 12px;margin:8px 0;border-radius:6px}
.bad{border:1px solid #ff8182;background:#ffebe9;padding:8px 12px;margin:8px 0;border-radius:6px}
.uncounted{opacity:.6}.nav{margin:12px 0}.nav a{margin-right:12px}
pre.log{background:#0d1117;color:#e6edf3;padding:8px 0;overflow-x:auto;
font:12px/1.45 ui-monospace,Menlo,monospace;counter-reset:l}
pre.log .l{display:block;padding:0 12px 0 0;white-space:pre-wrap;word-break:break-all}
pre.log .l:target{background:#3b2e00}
pre.log .n{display:inline-block;width:4em;padding-right:1em;text-align:right;color:#6e7681;
text-decoration:none;user-select:none}
.b{font-weight:700}.d{opacity:.7}.i{font-style:italic}.u{text-decoration:underline}
.f0{color:#484f58}
.f1{color:#ff7b72}
.f2{color:#3fb950}
.f3{color:#d29922}
.f4{color:#58a6ff}
.f5{color:#bc8cff}
.f6{color:#39c5cf}
.f7{color:#b1bac4}
.f8{color:#6e7681}
.f9{color:#ffa198}
.f10{color:#56d364}
.f11{color:#e3b341}
.f12{color:#79c0ff}.f13{color:#d2a8ff}.f14{color:#56d4dd}.f15{color:#fff}
.g0{background:#484f58}
.g1{background:#8e1519}
.g2{background:#196c2e}
.g3{background:#7d4e00}
.g4{background:#0d419d}
.g5{background:#6e40c9}
.g6{background:#1b7c83}
.g7{background:#6e7681}
.g8{background:#6e7681}
.g9{background:#a40e26}
.g10{background:#2ea043}
.g11{background:#9e6a03}
.g12{background:#1f6feb}
.g13{background:#8957e5}
.g14{background:#3192aa}
.g15{background:#b1bac4}
details summary{cursor:pointer;color:#0969da;font-size:12px}
"""

JS = """(function(){
var main=document.getElementById('main');if(!main||!window.fetch||!window.DOMParser)return;
var tag=main.getAttribute('data-etag');
function tick(){
fetch(location.pathname+location.search,{headers:{'If-None-Match':'"'+tag+'"'},cache:'no-store'})
.then(function(r){if(r.status!==200)return null;return r.text();})
.then(function(t){if(!t)return;
var d=new DOMParser().parseFromString(t,'text/html');var m=d.getElementById('main');
if(m){var n=document.importNode(m,true);main.replaceWith(n);main=n;
tag=n.getAttribute('data-etag');document.title=d.title;}})
.catch(function(){}).then(function(){setTimeout(tick,2000);});}
setTimeout(tick,2000);})();"""


def _hash(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def csp(*, script: bool, meta: bool = False) -> str:
    """The Content-Security-Policy: only our own inline CSS (and script, when served).
    ``meta``: the form for a ``<meta>`` tag, which cannot carry ``frame-ancestors``."""
    scripts = f"'{_hash(JS)}'" if script else "'none'"
    policy = (
        f"default-src 'none'; style-src '{_hash(CSS)}'; script-src {scripts}; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'"
    )
    return policy if meta else f"{policy}; frame-ancestors 'none'"


def esc(text: object) -> str:
    """Peer- or commit-derived text for HTML: invisible characters shown, then HTML-escaped."""
    return html.escape(safe("" if text is None else text), quote=True)


def link(href: str, text: str, *, cls: str = "") -> str:
    """A link to one of our own pages (``href`` built by :mod:`jobs.web.views`, then escaped)."""
    attr = f' class="{cls}"' if cls else ""
    return f'<a href="{html.escape(href, quote=True)}"{attr}>{text}</a>'


def external(url: str | None, text: str | None = None) -> str:
    """A peer's URL: a link only for http(s) (never ``javascript:``, ``data:``, ``file:``),
    otherwise the URL as plain text."""
    if not url:
        return '<span class="muted">-</span>'
    shown = esc(text if text is not None else url)
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        scheme = ""
    if scheme not in ("http", "https"):
        return f"<code>{shown}</code>"
    # Percent-encode anything outside printable ASCII so the href is exactly the recorded URL.
    href = quote(url, safe="!#$%&'()*+,/:;=?@[]~-._")
    return f'<a href="{html.escape(href, quote=True)}" rel="noopener noreferrer nofollow">{shown}</a>'


def state(word: str | None) -> str:
    """A state/outcome badge; the class is derived from a known word only."""
    text = word or "none"
    cls = text if text.replace("_", "").isalpha() and text.isascii() else "none"
    return f'<span class="st st-{cls}">{esc(text.replace("_", " "))}</span>'


def document(title: str, body: str, *, etag: str, live: bool, home: str = "index.html") -> str:
    """A whole page; ``live`` adds the refresh script (served pages, not static exports)."""
    script = f"<script>{JS}</script>" if live else ""
    policy = html.escape(csp(script=live, meta=True), quote=True)
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
        '<meta name="referrer" content="no-referrer">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<header>{link(home, 'git jobs')}</header>"
        f'<main id="main" data-etag="{html.escape(etag, quote=True)}">{body}</main>'
        f"{script}</body></html>\n"
    )
