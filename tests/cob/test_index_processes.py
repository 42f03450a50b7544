"""Two OS processes share one index file while writing and querying: no errors, no lost jobs,
and afterwards every answer still equals a fold from scratch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pygit2

import cob
import jobs
from tests.cob.test_index import answers, fresh

WORKER = r"""
import json, random, sys
import cob, jobs

repo, key, seed, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rebuild = sys.argv[5] == "1"
commits = sys.argv[6].split(",")
rng = random.Random(seed)
j = jobs.Jobs.open(repo, signer=cob.Signer.from_file(key))
seen = set()
for i in range(rounds):
    commit = rng.choice(commits)
    job = j.create(commit, rng.choice(["build", "test", "lint"]))
    run_id = job.run(f"https://worker{seed}.example/{i}")
    job.finish(run_id, rng.choice(["succeeded", "failed"]))
    seen.add(job.id)
    found = {x.id for x in j.find_by_commit(commit)}
    assert job.id in found, (job.id, found)
    if i % 7 == 0:
        listed = {x.id for x in j.all()}
        assert seen <= listed, seen - listed
    if rebuild and i % 10 == 5:
        j.rebuild_index()
print(json.dumps(sorted(seen)))
"""


def test_two_processes_share_the_index(repo: pygit2.Repository, tmp_path: Path) -> None:
    commits = [str(c.id) for c in repo.walk(repo.head.target)]
    keys = []
    for i in range(2):
        path = tmp_path / f"key{i}"
        cob.Signer.generate().save(path)
        keys.append(path)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, repo.path, str(keys[i]), str(i), "30", str(i), ",".join(commits)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert "Traceback" not in err
    written = set().union(*(json.loads(out) for out, _ in outs))
    reader = jobs.Jobs.open(repo.path)
    assert {x.id for x in reader.all()} == written
    assert answers(reader, commits) == fresh(repo, commits)
