"""The local lab inventory: containers started by `make lab` on this machine.

Fixed, not generated: the hosts, their Debian release and their SSH ports are
declared once in lab/harness.py (LAB_HOSTS) and read here; only each host's address on
Docker's bridge (audit_address, for `make audit`) is read from Docker. `make lab` creates
the SSH key and known_hosts under .lab/ssh/ before pyinfra connects.

The lab keeps its own throw-away secrets store and key under .lab/, so it
never needs (or touches) the production key.

Names imported with a leading underscore: pyinfra takes every other list or
tuple in this file for a host group.
"""

import os

from lab.harness import LAB_HOSTS as _LAB_HOSTS
from lab.harness import SECRETS_KEY as _SECRETS_KEY
from lab.harness import SECRETS_STORE as _SECRETS_STORE
from lab.harness import lab_ssh_data as _lab_ssh_data
from lab.harness import bridge_address as _bridge_address
from lab.relay import LAB_MAIL_ADMIN as _LAB_MAIL_ADMIN
from lab.relay import relay_ca as _relay_ca
from lab.relay import relay_data as _relay_data

os.environ.setdefault("ASSOTIC_SECRETS_FILE", str(_SECRETS_STORE))
os.environ.setdefault("ASSOTIC_SECRETS_KEY", str(_SECRETS_KEY))
# The lab never downloads upstream releases: it uses $ARTIFACTS_DIR and the local cache
# only, and group_data/lab.py says what a missing release becomes.
os.environ.setdefault("ASSOTIC_OFFLINE", "1")


def _lab_mail_data():
    """roles/mail: the lab's real relay (lab/relay.py), Postfix with STARTTLS and a SASL login
    as a provider's, delivering every mail into one mailbox the lab tests read. Its certificate
    comes from a lab CA the hosts trust; its name is only in the hosts' /etc/hosts (never in any
    DNS), so Postfix looks it up there ("native") and no query about it leaves the machine.
    Host data, not group data: the preflight (run from group_data/all.py, before the lab's group
    data is read) checks each host's relay and whether the store has its password.
    Nothing before `make lab` made the relay's CA: mail then waits in the queue."""
    relay = _relay_data()
    if relay is None:
        return {}
    return {"mail_relay": relay, "mail_relay_ca": _relay_ca(), "mail_relay_lookup": "native",
            "mail_admin": _LAB_MAIL_ADMIN}


def _documentation_addresses(h):
    """The lab hosts have no public address, yet `make dns` and `make dns-check` need one for
    every A and AAAA record: each host gets its own from the documentation ranges
    (RFC 5737 192.0.2.0/24, RFC 3849 2001:db8::/32), which route nowhere."""
    number = 10 + _LAB_HOSTS.index(h)
    return {"public_ipv4": f"192.0.2.{number}", "public_ipv6": f"2001:db8::{number}"}


def _lab_host_data(h):
    """How pyinfra reaches the host (SSH on a loopback port), where `make audit` runs
    testssl against its vhosts (its address on Docker's bridge, when the container is up),
    and the lab's mail relay."""
    address = _bridge_address(h)
    return {**_lab_ssh_data(h), **_documentation_addresses(h),
            **({"audit_address": address} if address else {}), **_lab_mail_data()}


web = [(h.name, _lab_host_data(h)) for h in _LAB_HOSTS if h.group == "web"]
# coturn, for real: a lab name and a self-signed certificate (lab names resolve nowhere).
turn = [(h.name, {**_lab_host_data(h), "turn_domain": f"{h.name}.lab.example.org",
                  "turn_certificate": "self-signed"})
        for h in _LAB_HOSTS if h.group == "turn"]
# The lab's backup target (roles/backup_target); the web hosts reach it over Docker's
# bridge network, at the address group_data/lab.py reads from Docker.
backup = [(h.name, _lab_host_data(h)) for h in _LAB_HOSTS if h.group == "backup"]
