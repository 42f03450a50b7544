"""An object whose history is over the limit folds deterministically: the oversized tips are
rejected as too large, the others are kept, whatever order the refs come in."""

from __future__ import annotations

import pygit2
import pytest

import cob
import jobs
from cob import evaluate as evaluate_module
from cob import sigrefs
from cob.change import write_change
from jobs.ops import StartRun


def _chain(repo: pygit2.Repository, signer: cob.Signer, job_id: str, parent: str, n: int, base: int) -> str:
    codec = cob.Store(repo).codec(jobs.JOB_TYPE)
    tip = parent
    for i in range(n):
        run_id = f"01900000-0000-7000-8000-{base + i:012x}"
        tip = write_change(repo, codec, signer, signer.nid, [StartRun(run_id, "https://x.example/1")], [tip])
    own_index = sigrefs.tree_of(repo, sigrefs.read_tip(repo, signer.nid))
    old = sigrefs.lookup(repo, own_index, jobs.TYPENAME, job_id)
    assert cob.set_tip(repo, signer, signer.nid, jobs.TYPENAME, job_id, tip, old)
    return tip


def test_an_oversized_namespace_is_dropped_the_same_way_everywhere(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.setattr(evaluate_module, "MAX_CHANGES", 40)
    repo = pygit2.init_repository(str(tmp_path), bare=True)  # type: ignore[arg-type]
    honest, hostile = cob.Signer.generate(), cob.Signer.generate()
    root = cob.Store(repo, honest).create(jobs.JOB_TYPE, [jobs.Request("a" * 40, "ci")]).object_id
    _chain(repo, honest, root, root, 10, 0)
    bad_tip = _chain(repo, hostile, root, root, 60, 1000)
    store = cob.Store(repo, cache=False)
    tips = store.tips(jobs.JOB_TYPE, root)
    codec = store.codec(jobs.JOB_TYPE)
    results = []
    for order in (sorted(tips.items()), sorted(tips.items(), reverse=True)):
        ev = evaluate_module.evaluate(repo, codec, root, dict(order))
        assert ev.state is not None
        assert ev.rejected == {bad_tip: "history larger than 40 changes"}
        results.append(ev.state)
    assert results[0] == results[1]
    assert len(results[0].runs[honest.nid]) == 10 and hostile.nid not in results[0].runs
    # Through the public API the job still loads, with the rejection reported.
    job = jobs.Jobs.open(repo, cache=False).get(root)
    assert job is not None and len(job.runs_of(honest.nid)) == 10
    assert [r.change for r in job.rejected] == [bad_tip]
