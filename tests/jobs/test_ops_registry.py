"""One owner per op: each op of the Job type is one module under jobs/ops/ with its own
validate, apply, summary and help line, and the registry (jobs.ops.OPS) is the one list the
decode table, the public names and the help derive from.

The toy op below is registered by a test alone: it reaches decode (read back from Git), the fold
and the commit message without any edit of jobs/jobtype.py.
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path
from typing import ClassVar

import pytest

import cob
import jobs
import jobs.jobtype
import jobs.ops
from jobs.jobtype import JOB_TYPE, JobType
from jobs.ops import OPS, Checking, Folding, JobOp, Request, StartRun, tag_of
from tests.clirunner import GIT_JOBS
from tests.conftest import init_repo

RUN = "01900000-0000-7000-8000-00000000a001"
COMMIT = "c" * 40


def test_every_registered_op_owns_its_rules_and_a_help_line() -> None:
    assert len({tag_of(op) for op in OPS}) == len(OPS), "tags are unique"
    for op in OPS:
        for method in ("validate", "apply", "summary"):
            assert method in vars(op), f"{op.__name__} defines its own {method}"
        assert op.help[:1].isupper() and op.help.endswith("."), op.help
        assert len(op.help) <= 80, f"{op.__name__}.help fits one line of -h"
        assert op.__module__ == f"jobs.ops.{op.__module__.rsplit('.', 1)[1]}", "one module per op"


def test_the_type_names_no_op_but_its_root() -> None:
    """jobs/jobtype.py dispatches to the ops' methods: no isinstance chain over the ops."""
    source = Path(jobs.jobtype.__file__).read_text(encoding="utf-8")
    names = {node.id for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Name)}
    assert names & {op.__name__ for op in OPS} == {"Request"}


def test_public_names_and_decode_table_derive_from_the_registry() -> None:
    names = {op.__name__ for op in OPS}
    assert names <= set(jobs.ops.__all__)
    # `from jobs import FinishRun` (the stable API) is the registered class itself.
    assert all(getattr(jobs, name) is getattr(jobs.ops, name) for name in names & set(jobs.__all__))
    assert set(JOB_TYPE.op_type.__args__) == set(OPS)


def test_the_help_of_show_lists_every_op_from_its_help_line() -> None:
    out = subprocess.run([str(GIT_JOBS), "show", "-h"], capture_output=True, text=True, check=True).stdout
    for op in OPS:
        assert f"{tag_of(op):<7}  {op.help}" in out


class Abandon(JobOp, tag="abandon"):
    """A toy op: the signer gives up one of its own started runs (it reads as cancelled)."""

    help: ClassVar[str] = "The signer gives up one of its own runs (a toy, in this test only)."

    run_id: str

    def validate(self, at: Checking) -> None:
        run = at.mine.get(self.run_id)
        if run is None or not any(at.dag.is_ancestor(c, at.change.oid) for c in run.start_changes):
            raise cob.Reject(f"abandon of unknown run {self.run_id}")

    def apply(self, at: Folding) -> None:
        run = at.mine[self.run_id]
        if run.finish_key is None:
            run.reason, run.finished_at, run.finish_key = "cancelled", at.change.timestamp, at.key

    def summary(self) -> str:
        return f"Abandon {self.run_id}"


class ToyJobType(JobType):
    """The Job type plus one op: the registry is the only thing it sets."""

    typename: ClassVar[str] = "dev.example.toyjob"
    ops: ClassVar[tuple[type[JobOp], ...]] = (*OPS, Abandon)


TOY = ToyJobType()


def test_an_op_registered_outside_reaches_decode_fold_and_summary(tmp_path: Path, signer: cob.Signer) -> None:
    repo = init_repo(tmp_path / "repo")
    store = cob.Store(repo, signer)
    job = store.create(TOY, [Request(COMMIT, "ci")], then=[StartRun(RUN, "https://ci.example/1")])
    change, _ = store.update(TOY, job.object_id, [Abandon(RUN)])

    again = cob.Store(cob.open_repository(str(tmp_path / "repo")), signer)  # decoded from Git
    folded = again.get(TOY, job.object_id)
    assert folded.rejected == {}
    run = folded.state.runs[signer.nid][RUN]
    assert run.reason == "cancelled"
    assert repo.get(change.oid).message == f"Abandon {RUN}\n"  # its summary

    with pytest.raises(cob.InvalidOpsError, match="abandon of unknown run"):
        store.update(TOY, job.object_id, [Abandon("01900000-0000-7000-8000-00000000a002")])


def test_the_published_type_decodes_only_its_registry() -> None:
    toy = cob.change.Codec(TOY).encode_ops([Abandon(RUN)])
    assert cob.change.Codec(TOY).decode_ops(toy) == (Abandon(RUN),)
    with pytest.raises(cob.InvalidChangeError, match="ops do not decode"):
        cob.change.Codec(JOB_TYPE).decode_ops(toy)
