"""Data for every host.

pyinfra runs this file while it builds the inventory, before it connects to any
host. That is where assotic validates the inventory, every tenant file in
group_data/tenants/ (or $ASSOTIC_TENANTS_DIR) and the secrets store: if anything
is wrong, every problem is printed and pyinfra stops with nothing touched.
"""

import os

from pyinfra import inventory

from assotic.preflight import load_platform

# --- Mattermost (roles/mattermost, docs/mattermost.md) -------------------------------------------
# "team": Mattermost Team Edition, as pinned in `releases["mattermost"]` below; it stops taking
# new users above 250 registered users per server, and `make check` warns when the associations
# of one instance declare more than 200 members. "unlimited": another build with the same
# tarball layout and no such limit (e.g. a community fork): replace `releases["mattermost"]` by
# its {version, url, sha256} (a checksum you checked) and say "unlimited" here.
mattermost_edition = "team"
# Shared instances: one Mattermost server each (its own Unix user, 127.0.0.1 port, database,
# domain), with one team per association that says `mattermost: {instance: <name>}`.
# An association may instead have an instance of its own (`mattermost: {host, domain}`).
mattermost_instances = {
    "chat": {"host": "web-1", "domain": "chat.example.org", "port": 8065},
}

# --- Outgoing mail (roles/mail, docs/mail.md) ------------------------------------------------------
# Every host runs Postfix as a null client; it relays all mail through this authenticated
# submission server (your association mail provider's, or any SMTP submission service):
# {"host": "smtp.example.net", "port": 587, "tls": "starttls", "login": "serveurs@example.net"}
# ("tls": "implicit" for port 465). Its password goes in the secrets store:
# `make secret-set NAME=mail/relay_password`. None: mail waits in the hosts' queues.
mail_relay = None
# Who receives the hosts' own mail (update reports, cron, backup alerts), and the address
# it is sent from (one your relay accepts; default: mail_admin).
mail_admin = None
mail_host_from = None

# Validated tenants and the decrypted-on-demand secrets store (see assotic/preflight.py).
platform = load_platform(inventory, mattermost_instances=mattermost_instances,
                         mattermost_edition=mattermost_edition, mail_relay=mail_relay,
                         mail_admin=mail_admin)
tenants = platform.tenants

# The volunteers who administer the servers (not the associations' app admins).
# Each gets a Unix account in group sudo and logs in with these keys only.
# Example: {"name": "camille", "ssh_keys": ["ssh-ed25519 AAAA... camille@laptop"]}
sysadmins = []

timezone = "Europe/Paris"

# --- Upstream releases and the artifact policy (assotic/artifacts.py, docs/apps.md) -------------
# Every upstream download is pinned here with the sha256 published for it; a file with any
# other checksum is refused. Where each checksum was read is kept next to it for reviewers.
# Bump: change version, url and sha256 together, from a source you checked.
releases = {
    # Nextcloud depends on the host's PHP, hence on its Debian release: the newest major
    # supporting it (https://github.com/nextcloud/server/wiki/Releases-and-PHP-versions:
    # 34 supports PHP 8.2-8.5, 35 supports 8.3-8.5 and drops 8.2).
    "nextcloud": {
        "12": {  # bookworm, PHP 8.2
            "version": "34.0.4",
            "url": "https://download.nextcloud.com/server/releases/nextcloud-34.0.4.tar.bz2",
            "signature_url": "https://download.nextcloud.com/server/releases/nextcloud-34.0.4.tar.bz2.asc",
            "sha256": "00f226e6364f96e0918ab06157158f66601b8cedc25af777f5ee5a3056f42b83",
            "checksum_source": "nixpkgs pkgs/servers/nextcloud/default.nix (nextcloud34, SRI "
                               "sha256-APIm5jZPluCRirBhVxWPZmAbjO3CWvd39e5aMFb0K4M=), same hex in "
                               "public Nomad jobs pinning nextcloud-34.0.4.tar.bz2",
        },
        "13": {  # trixie, PHP 8.4
            "version": "35.0.1",
            "url": "https://download.nextcloud.com/server/releases/nextcloud-35.0.1.tar.bz2",
            "signature_url": "https://download.nextcloud.com/server/releases/nextcloud-35.0.1.tar.bz2.asc",
            "sha256": "7ed305e880192d804ba83179a19dd22257679608d63161a611ce3f8a918d2aa6",
            "checksum_source": "a public NixOS configuration overriding nextcloud35 to 35.0.1 "
                               "(SRI sha256-ftMF6IAZLYBLqDF5oZ3SIldnlgjWMWGmEc4/ipGNKqY=, URL on "
                               "github.com/nextcloud-releases); single source: check it against "
                               "nextcloud-35.0.1.tar.bz2.sha256 when you first download it",
        },
    },
    # The newest release with a checksum published by a packaging we could read (no public
    # pin of 1.3.19-1.3.22.x was found). `make check` refuses one older than 1.3.13.
    "paheko": {
        "version": "1.3.18",
        "url": "https://fossil.kd2.org/paheko/uv/paheko-1.3.18.tar.gz",
        "sha256": "20c3dc445035dfd9fd75d661874c6a3a6216c3affe0a28bac29acdcaccf836a4",
        "checksum_source": "YunoHost-Apps/paheko_ynh manifest.toml lines 67-68, commit a6019ed8 "
                           "(1.3.18~ynh2, branch master)",
    },
    # Team Edition (mattermost_edition = "team"). Replace the whole pin to run another build.
    "mattermost": {
        "version": "11.1.1",
        "url": "https://releases.mattermost.com/11.1.1/mattermost-team-11.1.1-linux-amd64.tar.gz",
        "sha256": "2d10a9adf7d6bf50f3b276518112a17b295c8af06fe201cbfa18ab31fc1d814a",
        "checksum_source": "YunoHost-Apps/mattermost_ynh manifest.toml (11.1.1~ynh1, amd64.sha256)",
    },
}
# Where release files can be found offline: a folder or an http(s) URL. $ARTIFACTS_DIR wins.
artifacts_mirror = None
# OpenPGP key files to check upstream signatures with, by app (e.g. "nextcloud":
# "keys/nextcloud.asc", fingerprint 28806A878AE423A28372792ED75899B9A724937A). Without one the
# deploy says "signature not checked"; the sha256 pin is always checked.
artifact_signing_keys = {}
# A pinned release that cannot be found: "fail" stops the deploy before any host is changed.
# (The lab says "standin" in group_data/lab.py.)
missing_release = "fail"

# --- Updates (`make update`, commands/update.py, docs/updates.md) ---------------------------------
# The association whose instances are updated first; if one of its updates fails (and is rolled
# back), no other association is touched. None: no canary.
update_canary = None
# Nextcloud upgrades one major at a time. To cross several majors in one run, list a pin
# (version, url, sha256) of each major in between; without it such an update is refused.
nextcloud_upgrade_path = []
# `make backup-status` (and the nightly CI job) fails for any backup older than this.
backup_max_age_hours = 26

# --- Security audit (`make audit`, commands/audit.py, docs/audit.md) -----------------------------
# `make audit` fails for a host whose Lynis hardening index (0-100) is under this. 80: the
# project's aim with the base role's hardening (issue 10); the lab's hosts scored 61-65 before it.
audit_lynis_min_index = 80
# testssl.sh finding ids that do not fail the audit, each with the one-line reason why
# ({"cert_chain_of_trust": "..."}). Empty: every finding worse than OK fails. Only the lab
# accepts some (group_data/lab.py): its CA is a test CA.
audit_testssl_accepted = {}
# False: testssl.sh asks no DNS resolver anything (`--nodns none`), so it checks no CAA
# record. For domains that are in no DNS zone (the lab's).
audit_testssl_dns_lookups = True

from assotic.artifacts import host_debian_releases, resolve_releases  # noqa: E402
from assotic.preflight import check_release_pins  # noqa: E402

# A pin too old for this layout stops here, every such problem listed (assotic/preflight.py).
check_release_pins(releases, tenants, inventory)

# Looked up now, on this machine, before pyinfra connects: mirror, cache, then upstream.
release_set = resolve_releases(
    tenants, releases, host_debian_releases(inventory),
    mirror=artifacts_mirror, signing_keys=artifact_signing_keys,
    # `make check` never downloads; nor does an offline deploy (the lab: see inventory/lab.py).
    allow_download=os.environ.get("ASSOTIC_CHECK_ONLY") != "1"
    and os.environ.get("ASSOTIC_OFFLINE") != "1",
    # A shared Mattermost instance runs on its host even before any association joins it.
    instances=[("mattermost", instance.host) for instance in platform.mattermost],
)

__all__ = ["platform", "tenants", "sysadmins", "timezone", "releases", "artifacts_mirror",
           "artifact_signing_keys", "missing_release", "release_set", "mattermost_edition",
           "mattermost_instances", "mail_relay", "mail_admin", "mail_host_from", "update_canary",
           "nextcloud_upgrade_path", "backup_max_age_hours",
           "audit_lynis_min_index", "audit_testssl_accepted", "audit_testssl_dns_lookups"]
