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

__all__ = ["sysadmins"]
