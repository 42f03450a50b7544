"""Stress harnesses runnable by hand with large counts; the CI tests call them with small ones.

    python -m tests.stress.crash --iterations 300
    python -m tests.stress.concurrency --procs 8 --ops 500
    python -m tests.stress.hostile --ops-mb 100 --depth 100000

Each prints its figures (the README's "Hardening" table comes from these).
"""
