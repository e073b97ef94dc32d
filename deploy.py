"""assotic: the whole deploy, in order. Run with `pyinfra inventory/<name>.py deploy.py`.

Tenant files, inventory, secrets and releases were already validated in
group_data/all.py, before pyinfra connected to any host.

One plan per host (roles/plan.py plan_host), computed once below, says what runs here:
the app instances and their releases, what they need from the shared roles, the firewall
openings, the backups and the secrets. The app roles (roles/nextcloud, roles/paheko,
roles/mattermost, registered in roles/plan.py APP_ROLES) hand their needs to the shared
roles that own nginx, certificates, PHP-FPM, PostgreSQL, Redis and timers, then deploy
their own code and configuration. Order matters:
1. base: packages, sysadmins, sshd, firewall, automatic security updates. First, so
   that a host is hardened before any application listens; it renders the firewall
   from the openings every role declares. Then mail: Postfix as a null client on
   loopback, so that every later step (the apps' first admins) can already send mail.
2. accounts: the Unix user and folders of every app instance, which every later step
   runs as or writes into.
3. backends: PostgreSQL, each instance's Redis, PHP-FPM pools.
4. web front, on hosts that serve vhosts:
   a. nginx_front: nginx answers ACME challenges for every name on port 80;
   b. tls: certbot asks the ACME server, which fetches the challenge from (a);
   c. nginx vhosts: each 443 server needs the certificate made in (b).
5. apps: code, configuration and first install of each instance (or its stand-in),
   which need their database, Redis and pool from (3). Mattermost runs per instance
   (one server, one team per association), as its own systemd unit behind (4).
   After each app, its release marker (/var/lib/assotic/releases/): written only once
   the app's steps succeeded, so `make update` reads what really runs.
6. timers: the apps' background jobs, started once the apps are installed.
7. group roles, on their own hosts: coturn on `turn` hosts, BigBlueButton on `bbb` hosts
   (a machine of its own: preflight refuses a bbb host in another group). Web hosts have
   neither, so their flow above is unchanged.
8. backups: on backup targets (group backup), the SFTP-only accounts come right after
   base, so that they exist before any backed-up host initialises its repository there
   in the last step: restic, the backup jobs the apps asked for, and their timers.
"""

import sys
from pathlib import Path

# pyinfra puts only its working directory on sys.path; make `roles` importable from anywhere.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pyinfra import host, inventory  # noqa: E402
from pyinfra.facts.server import LinuxDistribution  # noqa: E402

from roles import accounts, backup, backup_target, base, mail, nginx, php, postgresql, redis, timers, tls  # noqa: E402
from roles.plan import plan_host  # noqa: E402
from roles.remote_files import put_text  # noqa: E402

if "bbb" in host.groups:
    from roles import bbb

    # Ubuntu release, cores and memory, from facts: raises, naming the host, while pyinfra
    # prepares, so nothing runs anywhere when a BBB host cannot take BigBlueButton.
    bbb.check_requirements()

plan = plan_host(host.name, host.data, host.groups, str(host.get_fact(LinuxDistribution)["major"]))

base.base(firewall_openings=list(plan.firewall_openings), update_report_mail_to=plan.mail.admin)
mail.mail(mail.settings_from(host.name, host.data, plan.mail), plan.secrets)

if "backup" in host.groups:
    backup_target.backup_target(plan.secrets)

accounts.instance_accounts(plan.instances)
postgresql.postgresql(plan.needs.databases, plan.secrets)
redis.redis(plan.needs.redis, plan.secrets)
php.php(plan.needs.pools)

if plan.needs.vhosts:
    nginx.nginx_front()
    tls.certificates(plan.needs.domains)
    nginx.nginx(plan.needs.vhosts)

for app in plan.apps:
    # roles.nextcloud.deploy, roles.paheko.deploy, roles.mattermost.deploy (APP_ROLES)
    app.role.deploy(app, plan.secrets)
    marker = app.marker
    if marker is not None:
        put_text(*marker)  # /var/lib/assotic/releases/, created with it

timers.timers(plan.needs.timers)

if "turn" in host.groups:
    from roles import coturn

    coturn.coturn(plan.secrets)

if "bbb" in host.groups:
    bbb.bigbluebutton(plan.secrets, bbb.turn_servers_of(inventory))

# Each association with BigBlueButton gets it in its own Nextcloud (app "bbb"), when that
# Nextcloud runs here as the real app (a stand-in has no occ).
for app in plan.apps:
    if app.app == "nextcloud" and app.release is not None and app.tenant.apps.bigbluebutton:
        from roles import bbb

        bbb.nextcloud_integration(app.tenant, app.release, plan.secrets, inventory)

if plan.backed_up:
    backup.backup(plan)
