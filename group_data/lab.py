"""Data for the local lab (hosts of inventory/lab.py, which pyinfra puts in group "lab").

The lab's sysadmin logs in with the lab key that `make lab` creates, so the
base role's sysadmin accounts, sudo and authorized_keys are exercised for real.
"""

import os

from lab.harness import SSH_KEY as _SSH_KEY

_lab_public_key = _SSH_KEY.with_suffix(".pub")

sysadmins = [
    {
        "name": "labadmin",
        "ssh_keys": [_lab_public_key.read_text().strip()] if _lab_public_key.exists() else [],
    }
]

# The lab cannot reach upstream release downloads: a missing release is replaced by the
# clearly named stand-in app (roles/standin) served by the same vhost, pool, database and
# Redis, so the platform is still tested end to end. Production keeps "fail".
missing_release = "standin"

# roles/tls: the lab's own ACME server. Debian's pebble runs on each lab host (loopback
# only) and issues real certificates through the same certbot code path as production,
# whose default is Let's Encrypt. Never set acme_lab_server on a production inventory.
acme_lab_server = True
acme_directory = "https://127.0.0.1:14000/dir"



def _lab_backup_target():
    """The lab's backup target (roles/backup_target) as the web hosts reach it: the backup
    container's address on Docker's bridge network, and its host keys as `make lab` read
    them into known_hosts. None (no backups, said loudly) when Docker or the container is
    not there, e.g. for `make check` on a machine without the lab."""
    from lab.harness import KNOWN_HOSTS, LAB_HOSTS, bridge_address

    target = next((h for h in LAB_HOSTS if h.group == "backup"), None)
    if target is None:
        return None
    address = bridge_address(target)
    try:
        lines = KNOWN_HOSTS.read_text().splitlines()
    except OSError:  # no known_hosts yet: no lab target
        return None
    prefix = f"[127.0.0.1]:{target.ssh_port} "
    keys = [" ".join(line.split()[1:3]) for line in lines if line.startswith(prefix)]
    if not address or not keys:
        return None
    return {"host": target.name, "address": address, "port": 22, "known_hosts": keys}


# roles/backup: every lab web host backs up to backup-1 over SFTP (docs/backup.md).
# The drill's throw-away lab (commands/drill.py) sets ASSOTIC_LAB_NO_BACKUP=1: it only
# receives restores.
backup_target = None if os.environ.get("ASSOTIC_LAB_NO_BACKUP") == "1" else _lab_backup_target()

# make audit (commands/audit.py, docs/audit.md): what testssl reports of the lab's vhosts and
# is expected of a lab, not of production. Each host's address for testssl (audit_address) is
# its bridge address, set per host in inventory/lab.py.
audit_testssl_accepted = {
    "cert_chain_of_trust": "the lab's certificates come from pebble, a test CA no client trusts",
    "cert_revocation": "pebble's certificates name neither a CRL nor an OCSP responder",
    "cert_validityPeriod": "pebble issues certificates valid 5 years (Let's Encrypt's: 90 days)",
}
# The lab's domains are in no DNS zone: a CAA lookup would ask the machine's resolver about
# names nobody serves (and test traffic stays on loopback and the lab's containers).
audit_testssl_dns_lookups = False

# make update: ulap is the canary (its instances are on web-1, the others' on web-2).
update_canary = "ulap"

__all__ = ["audit_testssl_accepted", "audit_testssl_dns_lookups", "update_canary", "sysadmins", "missing_release", "acme_lab_server", "acme_directory", "backup_target"]
