"""assotic: the whole deploy, in order. Run with `pyinfra inventory/<name>.py deploy.py`.

Tenant files and secrets were already validated in group_data/all.py, before
pyinfra connected to any host: by the time this file runs, the data is good.

Order matters:
1. base: packages, sysadmins, sshd, firewall, automatic security updates.
   It runs first so that a host is hardened before any application listens,
   and it renders the firewall from the openings every other role declares.
"""

from pyinfra import host

from roles import base

# Every role declares what it needs opened; only the base role writes the ruleset.
firewall_openings = base.ssh_openings(host.data)

base.base(firewall_openings=firewall_openings)
