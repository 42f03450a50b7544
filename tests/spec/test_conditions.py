"""``if``: a bad expression is a definition error; evaluating one is bounded work."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

import jobs
from jobs.spec.conditions import MAX_MATCH_WORK, Facts, evaluate, parse
from jobs.spec.definitions import parse_definitions


@pytest.mark.parametrize(
    ("condition", "problem"),
    [
        ("branch(main)", "quoted string"),
        ("os.system('x')", "unexpected text"),
        ("__import__('os')", "unexpected text"),
        ("branch('main') &&", "expected more"),
        ("succeeded('build')", "not in this job's needs"),
        ("(" * 20 + "true" + ")" * 20, "nested deeper"),
        ("x" * 600, "at most 512"),
    ],
)
def test_a_bad_condition_is_a_definition_error(condition: str, problem: str) -> None:
    text = f"[jobs.a]\nrun = 'x'\nif = {json.dumps(condition)}\n"
    with pytest.raises(jobs.DefinitionError) as err:
        parse_definitions(text, "ab" * 20)
    assert problem in str(err.value) and "jobs.a.if" in str(err.value)


class CountingPaths(list[str]):
    """Changed paths that count how often they are walked."""

    walks = 0

    def __iter__(self) -> Iterator[str]:
        CountingPaths.walks += 1
        return super().__iter__()


def test_each_changed_glob_is_matched_once_per_commit_and_the_work_is_bounded() -> None:
    paths = CountingPaths(f"src/{i}/f.c" for i in range(9990))
    facts = Facts("refs/heads/main", paths)
    cond = parse('changed("docs/*") || changed("*.md") || changed("web/*") || changed("src/9989/*")')
    CountingPaths.walks = 0
    for _ in range(200):  # 200 jobs, or 200 plans: each a new Facts sharing the commit's answers
        assert evaluate(cond, Facts(facts.ref, facts.changed, facts.outcome, facts.matches)) is True
    assert CountingPaths.walks == 4, CountingPaths.walks
    # distinct globs: matched until the comparisons run out, then counted as changed (the safe side)
    answers = [evaluate(parse(f'changed("nothing-{i}/*")'), facts) for i in range(200)]
    fit = MAX_MATCH_WORK // len(paths) - 4
    assert answers[:fit] == [False] * fit and all(answers[fit:]), answers.index(True)
    assert facts.matches.spent <= MAX_MATCH_WORK
