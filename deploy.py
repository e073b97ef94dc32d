"""assotic: the whole deploy, in order. Run with `pyinfra inventory/<name>.py deploy.py`.

Tenant files, inventory and secrets were already validated in group_data/all.py,
before pyinfra connected to any host: by the time this file runs, the data is good.

Order matters:
1. base: packages, sysadmins, sshd, firewall, automatic security updates.
   It runs first so that a host is hardened before any application listens,
   and it renders the firewall from the openings every role declares.
2. instance accounts: the Unix user and folders of every app instance, which the
   backends below run as.
3. backends: PostgreSQL, Redis, PHP-FPM, then the timers (which run as the instances).
"""

import sys
from pathlib import Path

# pyinfra puts only its working directory on sys.path; make `roles` importable from anywhere.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pyinfra import host  # noqa: E402

from roles import base, firewall_openings  # noqa: E402
from roles import php, postgresql, redis, timers  # noqa: E402
from roles.php.stand_in_needs import instances_of, stand_in_needs  # noqa: E402

base.base(firewall_openings=firewall_openings(host.data))

# TEMPORARY: needs built from the tenants directly, until the app roles hand theirs over.
needs = stand_in_needs(host.data.platform.tenants_on(host.name), host.name)
php.instance_accounts(instances_of(needs))
postgresql.postgresql(needs.databases)
redis.redis(needs.redis)
php.php(needs.pools)
timers.timers(needs.timers)
