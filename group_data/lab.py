"""Data for the local lab (hosts of inventory/lab.py, which pyinfra puts in group "lab").

The lab's sysadmin logs in with the lab key that `make lab` creates, so the
base role's sysadmin accounts, sudo and authorized_keys are exercised for real.
"""

from pathlib import Path

_lab_public_key = Path(__file__).resolve().parent.parent / ".lab" / "ssh" / "id_ed25519.pub"

sysadmins = [
    {
        "name": "labadmin",
        "ssh_keys": [_lab_public_key.read_text().strip()] if _lab_public_key.exists() else [],
    }
]

# roles/tls: the lab's own ACME server. Debian's pebble runs on each lab host (loopback
# only) and issues real certificates through the same certbot code path as production,
# whose default is Let's Encrypt. Never set acme_lab_server on a production inventory.
acme_lab_server = True
acme_directory = "https://127.0.0.1:14000/dir"

__all__ = ["sysadmins", "acme_lab_server", "acme_directory"]
