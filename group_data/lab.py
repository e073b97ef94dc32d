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

__all__ = ["sysadmins"]
