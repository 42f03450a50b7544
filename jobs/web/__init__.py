"""The maintainers' web page: `git jobs serve` (live, on 127.0.0.1) and `git jobs report --html`.

Small modules, one job each: :mod:`~jobs.web.data` (each view's JSON, from the CLI's shapes),
:mod:`~jobs.web.logs` (the one place a run's log is read), :mod:`~jobs.web.views` (HTML from
that JSON), :mod:`~jobs.web.page` (the document, CSP, escaping), :mod:`~jobs.web.ansi` (logs
with colours), :mod:`~jobs.web.svg` (the pass-rate chart), :mod:`~jobs.web.site` (paths and
ETags), :mod:`~jobs.web.server` (HTTP) and :mod:`~jobs.web.report` (static files). Imported
only by those two commands: no other command pays for it.
"""
