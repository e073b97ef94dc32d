"""Data for every host.

pyinfra runs this file while it builds the inventory, before it connects to any
host. That is where assotic validates the inventory, every tenant file in
group_data/tenants/ (or $ASSOTIC_TENANTS_DIR) and the secrets store: if anything
is wrong, every problem is printed and pyinfra stops with nothing touched.
"""

from pyinfra import inventory

from assotic.preflight import load_platform

# Validated tenants and the decrypted-on-demand secrets store (see assotic/preflight.py).
platform = load_platform(inventory)
tenants = platform.tenants

# The volunteers who administer the servers (not the associations' app admins).
# Each gets a Unix account in group sudo and logs in with these keys only.
# Example: {"name": "camille", "ssh_keys": ["ssh-ed25519 AAAA... camille@laptop"]}
sysadmins = []

timezone = "Europe/Paris"

__all__ = ["platform", "tenants", "sysadmins", "timezone"]
