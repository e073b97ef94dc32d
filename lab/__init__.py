"""The lab and the bench: throw-away systemd containers on this machine, for tests and figures.

  python -m lab up|down|status|restart NAME   the lab hosts (lab/harness.py, docs/lab.md)
  python -m lab.bench                         `make bench` (lab/bench.py)

Never imported by the deploy, the roles or the operator commands' production paths: it sits
on top of them (the import contract in .importlinter keeps it so).
"""
