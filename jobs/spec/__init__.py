"""``.git-jobs.toml``, the language: what a commit's file means, read the same by everyone.

The merge gate, the policy, the web page and the node all read definitions through this
package; it needs only the job type's names and checks (:mod:`jobs.errors`,
:mod:`jobs.jobtype`, :mod:`jobs.text`), never a store or the worker.

- :mod:`.file` — the one reader of the file in a commit's tree: bounds, one parse per blob.
- :mod:`.definitions` — ``[jobs]``, ``[trigger]``, ``[log]`` of the commit under test.
- :mod:`.policy` — the ``[policy]`` table (read at the policy ref by :mod:`jobs.policy`);
  :mod:`.schedule` — the ``[schedule]`` table (fired by :mod:`jobs.node.schedule`).
- :mod:`.conditions` (``if``), :mod:`.matrix`, :mod:`.templates` (``{placeholders}``),
  :mod:`.durations`, :mod:`.patterns` (retry delays), :mod:`.labels` (``runs_on``),
  :mod:`.resources`, :mod:`.outputs` (declared output paths).
"""
