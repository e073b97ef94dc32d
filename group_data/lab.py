"""Data for the local lab (hosts of inventory/lab.py, which pyinfra puts in group "lab").

The lab's sysadmin logs in with the lab key that `make lab` creates, so the
base role's sysadmin accounts, sudo and authorized_keys are exercised for real.
"""

from assotic.lab import SSH_KEY as _SSH_KEY

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

__all__ = ["sysadmins", "missing_release", "acme_lab_server", "acme_directory"]
