"""``if``: whether a job runs, as a small expression parsed here — never ``eval``.

    [jobs.deploy]
    run = "./deploy"
    if = 'branch("main") && !changed("docs/*")'

Grammar (whitespace between tokens is ignored)::

    expr  := term ("||" term)*
    term  := factor ("&&" factor)*
    factor:= "!" factor | "(" expr ")" | NAME "(" STRING ")" | "true" | "false"
           | value OP value                      OP: == != < <= > >=
    value := NUMBER | STRING | {needs.JOB.outputs.NAME} | "exit" | "output" "(" STRING ")"

Functions, each taking one double- or single-quoted string:

- ``ref(GLOB)``: the full ref the commit was reached by (a followed ref, or the ref a named
  REV resolves through, e.g. ``HEAD`` → ``refs/heads/main``) matches GLOB;
- ``branch(GLOB)`` / ``tag(GLOB)``: that ref is ``refs/heads/…`` / ``refs/tags/…`` (or a
  remote-tracking ``refs/remotes/R/…`` for branches) with the rest matching GLOB;
- ``changed(GLOB)``: a path changed against the first parent (every path for a root commit)
  matches GLOB (each GLOB is matched once per commit, at most :data:`MAX_MATCH_WORK` path
  comparisons per commit — past that, and past :data:`MAX_CHANGED` paths, it is true);
- ``succeeded(JOB)`` / ``failed(JOB)``: JOB, which must be one of the job's ``needs``, ended
  that way on this node (``failed``: its attempts are used up without success).

Values (issue 32): ``{needs.JOB.outputs.NAME}`` is what need JOB wrote to its
``$GIT_JOBS_OUTPUT`` (read from the ledger: :mod:`.values`; JOB must be one of the needs);
``exit`` and ``output(NAME)`` — the job's own exit status and outputs — exist only in a
``check`` (evaluated after the run). A comparison is numeric when both sides are numbers,
else ``==``/``!=`` compare text and the ordering ones are false; a missing value is the empty
text (so ``output("coverage") >= 80`` is false when the job wrote no ``coverage``).

GLOB is :func:`fnmatch.fnmatchcase` (``*`` also matches ``/``). A commit reached by no ref
(a bare sha) matches no ``ref``/``branch``/``tag``. The expression is peer data: its length,
its tokens and its nesting are bounded, and it is parsed when the file is read, so a bad one is
a definition error, not a surprise at run time.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

import pygit2

MAX_EXPR = 512
MAX_DEPTH = 16
_TOKEN = re.compile(
    r"\s*(?:(&&|\|\||==|!=|<=|>=|[<>]|[!()])|([a-z]+)|\"([^\"\\\n]{0,200})\"|'([^'\\\n]{0,200})'"
    r"|(-?[0-9]{1,15}(?:\.[0-9]{1,15})?)|(\{needs\.[^{}\s]{1,200}\}))"
)
FUNCTIONS = ("ref", "branch", "tag", "changed", "succeeded", "failed")
COMPARE = ("==", "!=", "<", "<=", ">", ">=")
AFTER_RUN = ("exit", "output")  # only in a `check`


class ConditionError(ValueError):
    """The expression does not parse (the message says where)."""


MAX_MATCH_WORK = 1_000_000  # path x glob comparisons per commit; past it changed() is true


@dataclass(slots=True)
class Matches:
    """Each ``changed(GLOB)`` answer of one commit, computed once (``spent``: paths compared).

    Shared by every plan of the commit, so re-planning after each skip costs nothing more; the
    comparisons are bounded (:data:`MAX_MATCH_WORK`): a glob past the bound counts as changed —
    the safe side, as for a diff too large to list."""

    known: dict[str, bool] = field(default_factory=dict)
    spent: int = 0

    def changed(self, paths: Collection[str] | None, glob: str) -> bool:
        if paths is None:
            return True
        hit = self.known.get(glob)
        if hit is None:
            if self.spent + len(paths) > MAX_MATCH_WORK:
                hit = True
            else:
                self.spent += len(paths)
                match = re.compile(fnmatch.translate(glob)).match
                hit = any(match(p) for p in paths)
            self.known[glob] = hit
        return hit


@dataclass(frozen=True, slots=True)
class Facts:
    """What a condition may look at: the ref, the changed paths, the needs' outcomes."""

    ref: str | None = None
    changed: Collection[str] | None = ()  # None: too many to list — every changed() is true
    outcome: Callable[[str], str] = field(default=lambda name: "")  # "succeeded" | "failed" | ""
    matches: Matches = field(default_factory=Matches, compare=False)  # changed() answers so far
    # {needs.JOB.outputs.NAME} → its value (None: none), read from the ledger (values.py)
    value: Callable[[str, str], str | None] = field(default=lambda job, name: None, compare=False)
    exit: int | None = None  # a check's: the command's exit status
    outputs: Mapping[str, str] = field(default_factory=dict)  # a check's: the job's own outputs


# A parsed expression: nested tuples ("or"|"and", a, b) | ("not", a) | ("call", f, arg) | ("const", b)
Node = tuple[object, ...]


def _tokens(text: str) -> list[str]:
    out, i = [], 0
    while i < len(text):
        m = _TOKEN.match(text, i)
        if m is None:
            if text[i:].strip() == "":
                break
            raise ConditionError(f"unexpected text at character {i + 1}")
        op, name, dq, sq, num, need = m.groups()
        if num is not None:
            out.append("#" + num)
        elif need is not None:
            out.append(need)
        else:
            out.append(op or name or "'" + (dq if dq is not None else sq or ""))
        i = m.end()
    return out


class _Parser:
    def __init__(self, tokens: list[str], after: bool = False) -> None:
        self.tokens, self.i = tokens, 0
        self.after = after  # a `check`: exit and output() are known

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, want: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (want is not None and tok != want):
            raise ConditionError(f"expected {want or 'more'} at token {self.i + 1}")
        self.i += 1
        return tok

    def expr(self, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise ConditionError(f"nested deeper than {MAX_DEPTH}")
        node = self.term(depth)
        while self.peek() == "||":
            self.take()
            node = ("or", node, self.term(depth))
        return node

    def term(self, depth: int) -> Node:
        node = self.factor(depth)
        while self.peek() == "&&":
            self.take()
            node = ("and", node, self.factor(depth))
        return node

    def value(self, tok: str) -> Node:
        """One side of a comparison."""
        if tok.startswith("'"):
            return ("str", tok[1:])
        if tok.startswith("#"):
            return ("num", tok[1:])
        if tok.startswith("{"):
            return _need(tok)
        if tok in AFTER_RUN and not self.after:
            raise ConditionError(f"{tok} is known only after the run: use it in `check`, not `if`")
        if tok == "exit":
            return ("exit",)
        if tok == "output":
            self.take("(")
            arg = self.take()
            if not arg.startswith("'"):
                raise ConditionError("output() takes one quoted string")
            self.take(")")
            return ("output", arg[1:])
        raise ConditionError(f"expected a value at token {self.i}, not {tok[:40]!r}")

    def factor(self, depth: int) -> Node:
        if depth > MAX_DEPTH:  # `!!!…` nests as deep as parentheses do
            raise ConditionError(f"nested deeper than {MAX_DEPTH}")
        tok = self.take()
        if tok == "!":
            return ("not", self.factor(depth + 1))
        if tok == "(":
            node = self.expr(depth + 1)
            self.take(")")
            return node
        if tok in ("true", "false"):
            return ("const", tok == "true")
        if tok[:1] in ("'", "#", "{") or tok in AFTER_RUN:
            left = self.value(tok)
            op = self.take()
            if op not in COMPARE:
                raise ConditionError(f"expected one of {' '.join(COMPARE)} at token {self.i}")
            return ("cmp", op, left, self.value(self.take()))
        if tok in FUNCTIONS:
            self.take("(")
            arg = self.take()
            if not arg.startswith("'"):
                raise ConditionError(f"{tok}() takes one quoted string")
            self.take(")")
            return ("call", tok, arg[1:])
        raise ConditionError(f"unknown word {tok[:40]!r} (use {', '.join(FUNCTIONS)}, true, false)")


def _need(tok: str) -> Node:
    from .values import PLACEHOLDER  # only an expression with a placeholder pays for it

    m = PLACEHOLDER.fullmatch(tok)
    if m is None:
        raise ConditionError(f"placeholder {tok[:60]!r} must be {{needs.JOB.outputs.NAME}}")
    return ("need", m.group(1), m.group(2))


def parse(text: str, *, after: bool = False) -> Node:
    """The expression's tree; :class:`ConditionError` if it is not one. ``after``: a
    ``check`` (``exit`` and ``output()`` may appear)."""
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_EXPR:
        raise ConditionError(f"must be a non-empty expression of at most {MAX_EXPR} characters")
    parser = _Parser(_tokens(text), after)
    node = parser.expr(0)
    if parser.peek() is not None:
        raise ConditionError(f"unexpected {parser.peek()!r} at token {parser.i + 1}")
    return node


def jobs_named(node: Node) -> set[str]:
    """The jobs an expression asks about with succeeded()/failed() or reads the outputs of
    (they must be needs)."""
    if node[0] == "call":
        return {str(node[2])} if node[1] in ("succeeded", "failed") else set()
    if node[0] == "need":
        return {str(node[1])}
    return set().union(*(jobs_named(n) for n in node[1:] if isinstance(n, tuple)))


def reads_exit(node: Node) -> bool:
    """Does the expression read ``exit``? (A check that does not is added to "exit 0".)"""
    return node[0] == "exit" or any(reads_exit(n) for n in node[1:] if isinstance(n, tuple))


_NUMBER = re.compile(r"^\s*-?[0-9]{1,15}(?:\.[0-9]{1,15})?\s*$")


def _operand(node: Node, facts: Facts) -> str | float:
    kind = node[0]
    if kind == "num":
        return float(str(node[1]))
    if kind == "exit":
        return float(facts.exit) if facts.exit is not None else ""
    if kind == "output":
        got: str | None = facts.outputs.get(str(node[1]))
    elif kind == "need":
        got = facts.value(str(node[1]), str(node[2]))
    else:
        got = str(node[1])
    return "" if got is None else got


def _compare(op: str, left: str | float, right: str | float) -> bool:
    """Numbers when both sides are; else text for ==/!= (ordering text is false)."""
    if isinstance(left, str) and _NUMBER.match(left):
        left = float(left)
    if isinstance(right, str) and _NUMBER.match(right):
        right = float(right)
    if isinstance(left, float) != isinstance(right, float):
        left, right = str(left), str(right)
        if op not in ("==", "!="):
            return False
    elif isinstance(left, str) and op not in ("==", "!="):
        return False
    table = {
        "==": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
    }
    return bool(table[op](left, right))


def _ref_rest(ref: str | None, kind: str) -> str | None:
    if ref is None:
        return None
    if kind == "branch":
        if ref.startswith("refs/heads/"):
            return ref[len("refs/heads/") :]
        m = re.match(r"refs/remotes/[^/]+/(.+)", ref)
        return m.group(1) if m else None
    return ref[len("refs/tags/") :] if ref.startswith("refs/tags/") else None


def evaluate(node: Node, facts: Facts) -> bool:
    """The expression's value for these facts."""
    kind = node[0]
    if kind == "const":
        return bool(node[1])
    if kind == "not":
        return not evaluate(node[1], facts)  # type: ignore[arg-type]
    if kind in ("and", "or"):
        left = evaluate(node[1], facts)  # type: ignore[arg-type]
        if left is (kind == "or"):
            return left
        return evaluate(node[2], facts)  # type: ignore[arg-type]
    if kind == "cmp":
        return _compare(str(node[1]), _operand(node[2], facts), _operand(node[3], facts))  # type: ignore[arg-type]
    func, arg = str(node[1]), str(node[2])
    if func == "ref":
        return facts.ref is not None and fnmatch.fnmatchcase(facts.ref, arg)
    if func in ("branch", "tag"):
        rest = _ref_rest(facts.ref, func)
        return rest is not None and fnmatch.fnmatchcase(rest, arg)
    if func == "changed":
        return facts.matches.changed(facts.changed, arg)
    return facts.outcome(arg) == func


MAX_CHANGED = 10_000  # paths compared; a larger diff counts as "everything changed"


def changed_paths(repo: pygit2.Repository, commit: str) -> list[str] | None:
    """Paths changed against the first parent (all paths of a root commit); None: too many."""
    obj = repo.get(commit)
    if not isinstance(obj, pygit2.Commit):
        return []
    # names only: the direction of the diff does not matter; no parent: against the empty tree
    diff = obj.tree.diff_to_tree(obj.parents[0].tree) if obj.parents else obj.tree.diff_to_tree()
    out: list[str] = []
    for delta in diff.deltas:
        out.extend({delta.old_file.path, delta.new_file.path})
        if len(out) > MAX_CHANGED:
            return None
    return out
