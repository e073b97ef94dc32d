"""The lab and the bench: throw-away systemd containers on this machine, for tests and figures.

  python -m lab up|down|status|restart NAME   the lab hosts (lab/harness.py, docs/lab.md)
  python -m lab.bench                         `make bench` (lab/bench.py)

It sits on top: the roles, the operator commands and the model never import it (the import
contract in .importlinter keeps it so). Only the lab's own inventory and data
(inventory/lab.py, group_data/lab.py) read its hosts and keys; the drill starts it with
`python -m lab up`, in a process of its own.
"""
