"""assotic: the whole deploy, in order. Run with `pyinfra inventory/<name>.py deploy.py`.

Tenant files, inventory and secrets were already validated in group_data/all.py,
before pyinfra connected to any host: by the time this file runs, the data is good.

Order matters:
1. base: packages, sysadmins, sshd, firewall, automatic security updates.
   It runs first so that a host is hardened before any application listens,
   and it renders the firewall from the openings every role declares.
2. web front, on hosts that serve vhosts:
   a. nginx_front: nginx answers ACME challenges for every name on port 80;
   b. tls: certbot asks the ACME server, which fetches the challenge from (a);
   c. nginx vhosts: each 443 server needs the certificate made in (b).
"""

import sys
from pathlib import Path

# pyinfra puts only its working directory on sys.path; make `roles` importable from anywhere.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pyinfra import host  # noqa: E402

from roles import base, firewall_openings, nginx, tls  # noqa: E402
from roles import temporary_standin_needs  # noqa: E402  TEMPORARY, see roles/__init__.py

# TEMPORARY: static standin vhosts until the app roles hand over their needs.
needs = temporary_standin_needs(host.name, host.data)

base.base(firewall_openings=firewall_openings(host.data, needs))

if needs.vhosts:
    nginx.nginx_front()
    tls.certificates(needs.domains)

    # --- TEMPORARY: a page naming each standin vhost, so the checks can tell whose content
    # a server answers with. Goes away with temporary_standin_needs.
    from roles.remote_files import put_text  # noqa: E402

    for vhost in needs.vhosts:
        put_text(f"{vhost.web_root}/index.html",
                 f"<!doctype html><title>{vhost.domain}</title><p>assotic standin: {vhost.domain}\n")
    # --- end TEMPORARY

    nginx.nginx(needs.vhosts)
