"""roles/nextcloud: one Nextcloud per association, on shared read-only code.

Pure part (no host): `nextcloud_needs(tenant, release)` says what the instance asks of
the shared roles (vhost, PHP pool, PostgreSQL database, Redis, cron timer), and the
render functions give every file the role writes. The `nextcloud` deploy function then
installs and configures the app itself; deploy.py runs it AFTER the shared roles.

Layout (evidence and the reasons in docs/apps.md):
  /opt/assotic/nextcloud-<version>/   the release, root-owned, read-only, shared by tenants
  <home>/config/                      NEXTCLOUD_CONFIG_DIR: config.php (Nextcloud's) and
                                      assotic.config.php (ours, merged over it)
  <home>/apps/                        this instance's writable apps folder (apps_paths)
  <home>/data/                        datadirectory, outside any web root
  /var/www/assotic-assets/<user>/     the static files (css, js, images...) of <home>/apps,
                                      copied by a timer, served by nginx under /custom_apps/

When the release is missing and data says `missing_release = "standin"`, the same
needs are served by roles/standin instead, and a loud notice says so.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from io import StringIO
from typing import Any

from assotic.artifacts import OPT_ROOT, Artifact
from assotic.layout import LOCAL_SMTP_HOST, LOCAL_SMTP_PORT
from assotic.needs import (AppInstance, BackupSpec, Database, HostNeeds, PhpPool, RedisInstance, StaticAlias,
                           Timer, Vhost, as_instance_user)
from assotic.tenants import Tenant, quota_bytes
from roles import standin as standin_role
from assotic.templating import render

APP = "nextcloud"
# The database is reached over TCP on loopback with the instance's own password (the
# postgresql role's pg_hba rule for app roles); the stand-in checks the same path.
DB_HOST = "127.0.0.1"
DB_PORT = 5432
OCC_SECRETS = f"{OPT_ROOT}/nextcloud-occ-secrets.php"
CONFIG_FRAGMENT = "assotic.config.php"
# APCu is Nextcloud's local cache; the CLI (occ, cron) needs it enabled too or occ fails.
# The modules Nextcloud's admin manual lists as required or recommended for PostgreSQL
# and Redis (ctype, dom, fileinfo, json, openssl, posix, session... are built into Debian's
# PHP). imagick is left out: it pulls ImageMagick for previews only.
# https://docs.nextcloud.com/server/latest/admin_manual/installation/php_configuration.html
PHP_EXTENSIONS = ("bcmath", "curl", "gd", "gmp", "intl", "mbstring", "pgsql", "redis", "xml", "zip")
PHP_CLI = ("/usr/bin/php", "-d", "apc.enable_cli=1")
CRON_EVERY = "*:0/5"  # Nextcloud's documented background job interval: every 5 minutes

# occ user:list and group:list return 500 entries unless given --limit (the option's default in
# core/Command/User/ListCommand.php and Group/ListCommand.php): past 500 members an admin
# would look missing and be added again. Far above any association's size.
OCC_LIST_LIMIT = 1_000_000

# -- App-store apps' static files (apps_paths url /custom_apps) ---------------------------------
# Nextcloud builds the URL of an app's assets from its apps_paths entry (/custom_apps/<app>/js/..),
# and its admin manual (apps_management.rst, "Using custom app directories") says a path outside
# the server root must be reachable at that URL. nginx's workers run as www-data for every vhost
# of the host, and <home> is 0750 to the instance's user: giving www-data a way into it (ACLs or
# o+x) would expose whatever a guessed name reaches there, and a default ACL cannot tell a .css
# from config.php. So the instance's own user copies ONLY files with the static extensions of
# Nextcloud's nginx configuration (nginx-root.conf.sample, "Serve static files") into a tree of
# its own outside <home>, and nginx serves /custom_apps/ from that copy: www-data never reads
# PHP code, config or data. The copy runs from a timer (apps updated from the web UI) and right
# after the deploy installs or enables an app. It runs as the instance's user, not root: root
# walking a tree another user writes is how symlink races start; rsync without --links skips
# symlinks altogether.
ASSETS_ROOT = "/var/www/assotic-assets"
ASSETS_URL = "/custom_apps/"
ASSET_EXTENSIONS = ("css", "js", "mjs", "svg", "gif", "ico", "jpg", "png", "webp", "wasm", "tflite",
                    "map", "ogg", "flac", "otf", "woff", "woff2")
ASSETS_EVERY = "*:0/5"

# -- Keys this role writes into config.php -------------------------------------------------------
# Nextcloud's Config::writeData (lib/private/Config.php) writes its whole merged config, ours
# included, back into config.php whenever it saves a setting: a key we stop setting stays in
# config.php and keeps applying. So the role records the keys it sets, one file per instance,
# and deletes with `occ config:system:delete` a key it set before and no longer sets.
MANAGED_KEYS_DIR = "/var/lib/assotic/nextcloud"
# Keys set by deploys from before that record existed, that the template no longer sets.
LEGACY_MANAGED_KEYS = ("memcache.locking",)

# Host-data knobs and their defaults (docs/apps.md).
DEFAULTS: dict[str, Any] = {
    "nextcloud_phone_region": "FR",
    "nextcloud_maintenance_window_start": 1,  # 01:00-05:00 UTC
    # The host's Postfix (roles/mail) on loopback: no TLS, no login there; it relays with both.
    "nextcloud_mail_smtpmode": "smtp",
    "nextcloud_mail_smtphost": LOCAL_SMTP_HOST,
    "nextcloud_mail_smtpport": LOCAL_SMTP_PORT,
    "timezone": "Europe/Paris",
}


def instance(tenant: Tenant) -> AppInstance:
    return AppInstance(tenant.slug, APP)


def apps_dir(inst: AppInstance) -> str:
    return f"{inst.home}/apps"


def cron_unit(inst: AppInstance) -> str:
    return f"assotic-nextcloud-cron-{inst.slug}"


def assets_dir(inst: AppInstance) -> str:
    return f"{ASSETS_ROOT}/{inst.user}"


def assets_unit(inst: AppInstance) -> str:
    return f"assotic-nextcloud-assets-{inst.slug}"


def assets_sync_command(inst: AppInstance) -> tuple[str, ...]:
    """rsync of the static files only of <home>/apps into assets_dir (modes set, the rest removed)."""
    return ("/usr/bin/rsync", "--recursive", "--times", "--perms", "--chmod=D755,F644",
            "--delete", "--delete-excluded", "--prune-empty-dirs",
            "--include=*/", *(f"--include=*.{ext}" for ext in ASSET_EXTENSIONS), "--exclude=*",
            f"{apps_dir(inst)}/", f"{assets_dir(inst)}/")


def assets_timer(inst: AppInstance) -> Timer:
    return Timer(unit=assets_unit(inst),
                 description=f"Copy the static files of Nextcloud apps of {inst.slug} for nginx",
                 user=inst.user, command=assets_sync_command(inst), on_calendar=ASSETS_EVERY,
                 writable_paths=(assets_dir(inst),), network=False)


def assets_alias(inst: AppInstance) -> StaticAlias:
    return StaticAlias(url_prefix=ASSETS_URL, folder=assets_dir(inst), extensions=ASSET_EXTENSIONS)


def managed_keys_path(inst: AppInstance) -> str:
    return f"{MANAGED_KEYS_DIR}/{inst.user}.managed-keys"


def fragment_keys(fragment: str) -> list[str]:
    """The top-level keys of a rendered assotic.config.php (two-space indent, as the template)."""
    return re.findall(r"^  '([^']+)' =>", fragment, flags=re.MULTILINE)


def keys_to_delete(previous: list[str] | None, current: list[str]) -> list[str]:
    """Keys set by an earlier deploy and not by this one. None: no record (an older deploy)."""
    previous = [*current, *LEGACY_MANAGED_KEYS] if previous is None else previous
    return [key for key in dict.fromkeys(previous) if key not in current]


def domain(tenant: Tenant) -> str:
    return tenant.apps.nextcloud.domain


# -- Needs ---------------------------------------------------------------------------------------


def nextcloud_needs(tenant: Tenant, release: Artifact | None) -> HostNeeds:
    """What this tenant's Nextcloud asks of the shared roles.

    `release` is the resolved, available release for the host's Debian release, or None
    when it is missing and the stand-in serves instead (same user, database and Redis).
    """
    inst = instance(tenant)
    database = Database(name=inst.user, owner=inst.user, password_secret=inst.secret("db_password"))
    redis = RedisInstance(instance=inst, password_secret=inst.secret("redis_password"))
    if release is None:
        # The stand-in gets the same /custom_apps/ copy and alias, so the lab checks them.
        standin_vhost = standin_role.standin_vhost(domain(tenant), inst)
        return HostNeeds(
            vhosts=[Vhost(**{**standin_vhost.__dict__, "static_aliases": (assets_alias(inst),)})],
            pools=[standin_role.standin_pool(inst, PHP_EXTENSIONS)],
            databases=[database],
            redis=[redis],
            timers=[standin_role.standin_timer(cron_unit(inst), inst, CRON_EVERY), assets_timer(inst)],
            backups=[nextcloud_backup(tenant, None)],
        )
    code = release.install_dir
    return HostNeeds(
        vhosts=[Vhost(domain=domain(tenant), instance=inst, kind="nextcloud", web_root=code,
                      php_socket=inst.php_socket, max_body_size="512M",
                      static_aliases=(assets_alias(inst),))],
        pools=[PhpPool(
            instance=inst,
            code_dirs=(code,),
            # Nextcloud reads its config from here instead of <code>/config (lib/base.php).
            env=(("NEXTCLOUD_CONFIG_DIR", inst.config_dir),),
            extensions=PHP_EXTENSIONS,
            admin_values=(
                ("memory_limit", "512M"),
                ("upload_max_filesize", "512M"),
                ("post_max_size", "512M"),
                ("output_buffering", "0"),  # recommended by Nextcloud for big downloads
            ),
        )],
        databases=[database],
        redis=[redis],
        timers=[Timer(
            unit=cron_unit(inst),
            description=f"Nextcloud background jobs for {tenant.slug}",
            user=inst.user,
            command=(*PHP_CLI, "-f", f"{code}/cron.php"),
            on_calendar=CRON_EVERY,
            working_directory=inst.home,
            environment=(("NEXTCLOUD_CONFIG_DIR", inst.config_dir),),
            # data, config (config.php), apps, tmp and log: all under its home.
            writable_paths=(inst.home,),
        ), assets_timer(inst)],
        backups=[nextcloud_backup(tenant, release)],
    )


def nextcloud_backup(tenant: Tenant, release: Artifact | None) -> BackupSpec:
    """What roles/backup saves of this Nextcloud: data, config, apps, and a pg_dump taken
    in maintenance mode (Nextcloud's documented backup procedure). Maintenance mode is
    turned off by the job's trap even when a step fails. A snapshot's config.php says
    maintenance on (it was taken so): a restore turns it off, then runs
    `occ maintenance:data-fingerprint` so that sync clients re-check their files.
    https://docs.nextcloud.com/server/latest/admin_manual/maintenance/backup.html
    """
    inst = instance(tenant)
    if release is None:
        return BackupSpec(
            instance=inst, paths=(inst.data_dir, inst.config_dir), postgres_db=inst.user,
            notices=(f"nextcloud {inst.slug} is the stand-in: no occ, maintenance mode skipped",),
        )
    occ = occ_prefix(inst, release)
    return BackupSpec(
        instance=inst,
        paths=(inst.data_dir, inst.config_dir, apps_dir(inst)),
        # The updater's own backups and caches are rebuilt, never restored.
        excludes=(f"{inst.data_dir}/updater-*", f"{inst.data_dir}/appdata_*/preview"),
        postgres_db=inst.user,
        pre_hooks=(f"{occ} maintenance:mode --on",),
        post_hooks=(f"{occ} maintenance:mode --off",),
        hook_writable_paths=(inst.home,),
        after_restore=(f"{occ} maintenance:mode --off", f"{occ} maintenance:data-fingerprint"),
    )


# -- Rendered files ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NextcloudContext:
    """What templates/nextcloud/*.j2 see as `nextcloud`."""

    tenant_name: str
    url: str
    trusted_domains: tuple[str, ...]
    code_dir: str
    apps_dir: str
    tmp_dir: str
    log_file: str
    redis_socket: str
    redis_user: str
    redis_password: str
    phone_region: str
    maintenance_window_start: int
    timezone: str
    mail_smtpmode: str
    mail_smtphost: str | None
    mail_smtpport: int
    mail_from_address: str
    mail_domain: str


def _knob(data: Any, name: str) -> Any:
    value = data.get(name) if isinstance(data, dict) else getattr(data, name, None)
    return DEFAULTS[name] if value is None else value


def config_context(tenant: Tenant, release: Artifact, redis_password: str,
                   data: Any = None) -> NextcloudContext:
    inst = instance(tenant)
    data = data or {}
    return NextcloudContext(
        tenant_name=tenant.name,
        url=f"https://{domain(tenant)}",
        trusted_domains=(domain(tenant),),
        code_dir=release.install_dir,
        apps_dir=apps_dir(inst),
        tmp_dir=inst.tmp_dir,
        log_file=f"{inst.log_dir}/nextcloud.log",
        redis_socket=RedisInstance(inst, inst.secret("redis_password")).socket,
        redis_user=RedisInstance(inst, inst.secret("redis_password")).acl_user,
        redis_password=redis_password,
        phone_region=_knob(data, "nextcloud_phone_region"),
        maintenance_window_start=int(_knob(data, "nextcloud_maintenance_window_start")),
        timezone=_knob(data, "timezone"),
        mail_smtpmode=_knob(data, "nextcloud_mail_smtpmode"),
        mail_smtphost=_knob(data, "nextcloud_mail_smtphost"),
        mail_smtpport=int(_knob(data, "nextcloud_mail_smtpport")),
        # Nextcloud builds its sender from two keys: <mail_from_address>@<mail_domain>.
        mail_from_address=tenant.mail_from.split("@")[0],
        mail_domain=tenant.mail_from.split("@")[1],
    )


def config_fragment(context: NextcloudContext) -> str:
    """<config>/assotic.config.php, merged by Nextcloud over its own config.php."""
    return render("nextcloud/assotic.config.php.j2", nextcloud=context)


def occ_secrets_script() -> str:
    return render("nextcloud/occ-secrets.php.j2", nextcloud={})


EMPTY_CONFIG = "<?php\n$CONFIG = array (\n);\n"  # Nextcloud fills it in during the install


def default_quota(tenant: Tenant) -> str:
    """files/default_quota as Nextcloud spells it ("none" for no limit)."""
    return "none" if quota_bytes(tenant.quotas.per_user) is None else tenant.quotas.per_user


def install_job(tenant: Tenant, release: Artifact, db_password: str, admin_password: str) -> str:
    """The occ-secrets job for `occ maintenance:install` (holds secrets: 0600, then deleted)."""
    inst = instance(tenant)
    admin = tenant.admins[0]
    args = [
        "maintenance:install", "--no-interaction",
        "--database=pgsql", f"--database-name={inst.user}", f"--database-host={DB_HOST}",
        f"--database-port={DB_PORT}", f"--database-user={inst.user}",
        f"--database-pass={db_password}",
        f"--admin-user={admin.username}", f"--admin-pass={admin_password}",
        f"--admin-email={admin.email}",
        f"--data-dir={inst.data_dir}",
    ]
    job = {"occ": f"{release.install_dir}/occ", "args": args,
           "env": {"NEXTCLOUD_CONFIG_DIR": inst.config_dir}}
    return json.dumps(job, indent=2) + "\n"


def version_tuple(version: str) -> tuple[int, ...]:
    """(34, 0, 4) for "34.0.4" and for config.php's "34.0.4.2" (its 4th part is a build)."""
    return tuple(int(part) for part in version.split(".")[:3] if part.isdigit())


def lifecycle_step(config_state: dict, release_version: str) -> str:
    """"install", "upgrade" or "current", from config.php (NextcloudConfigState) and the pin.

    Nextcloud cannot go back to older code: a pin older than what config.php records stops
    the deploy with a message rather than breaking the instance."""
    if not config_state.get("installed"):
        return "install"
    recorded = config_state.get("version")
    if not recorded:
        return "current"
    if version_tuple(recorded) < version_tuple(release_version):
        return "upgrade"
    if version_tuple(recorded) > version_tuple(release_version):
        raise ValueError(f"Nextcloud runs {recorded} (config.php) but the pin is {release_version}: "
                         "Nextcloud cannot be downgraded; restore a snapshot from before the upgrade "
                         "(make restore) or pin the version that runs")
    return "current"


def occ_prefix(inst: AppInstance, release: Artifact) -> str:
    """Shell prefix running occ as the instance's user with its config dir."""
    return shlex.join([*as_instance_user(inst.user), "env",
                       f"NEXTCLOUD_CONFIG_DIR={inst.config_dir}", *PHP_CLI,
                       f"{release.install_dir}/occ"])


def admin_steps(tenant: Tenant, users: dict, groups: dict) -> list[list[str]]:
    """occ argv lists adding missing admins and putting admins into group admin.

    The first admin is created by the install, with the tenant's admin_password secret.
    The others get a generated password and a welcome e-mail with a reset link, so no
    password of theirs ever goes through the deploy.
    """
    steps: list[list[str]] = []
    members = set(groups.get("admin", []))
    for admin in tenant.admins:
        if admin.username not in users:
            steps.append(["user:add", "--generate-password", f"--email={admin.email}",
                          f"--display-name={admin.name}", "--group=admin", admin.username])
        elif admin.username not in members:
            steps.append(["group:adduser", "admin", admin.username])
    return steps


def app_steps(tenant: Tenant, app_list: dict) -> list[list[str]]:
    """occ argv lists enabling the tenant's apps (installing those not shipped)."""
    enabled = set((app_list or {}).get("enabled", {}))
    disabled = set((app_list or {}).get("disabled", {}))
    steps = []
    for app in tenant.apps.nextcloud.enabled_apps:
        if app in enabled:
            continue
        steps.append(["app:enable", app] if app in disabled else ["app:install", app])
    return steps


# -- Deploy --------------------------------------------------------------------------------------


def deploy(app, secrets: Any) -> None:
    """The app-role interface (roles/plan.py APP_ROLES): deploy one planned instance."""
    nextcloud(app.tenant, app.release, app.release_path, secrets)


def nextcloud(tenant: Tenant, release: Artifact | None, local_release_path, secrets: Any) -> None:
    """Install and configure this tenant's Nextcloud (after the shared roles ran).

    `release` None: the stand-in is installed instead (the caller checked the policy).
    Three stages: the files (release, config, folders), the install or upgrade decided from
    config.php, then the converge through occ (skipped while an upgrade or maintenance runs).
    """
    from pyinfra import host

    from roles.releases import install_release

    inst = instance(tenant)
    _assets_folders(inst)
    if release is None:
        _standin(inst, secrets, tenant)
        return
    unpacked = install_release(release, local_release_path)
    fragment = _config_files(tenant, release, secrets)
    step, state, changed = _install_or_upgrade(tenant, release, secrets)
    if step == "upgrade" or state.get("maintenance"):
        # occ's answers (users, groups, apps, settings) are unknown before the new code runs,
        # and occ serves almost nothing in maintenance mode: acting on "unknown" would re-add
        # what exists. The next deploy (make update runs one) converges them.
        host.noop(f"Nextcloud {tenant.slug}: {'upgrade to ' + release.version if step == 'upgrade' else 'maintenance mode'}"
                  " in this run: users, groups, apps and settings are converged by the next deploy")
        return
    _converge(tenant, release, fragment, installed=step != "install")
    if unpacked is not None:
        host.noop(f"Nextcloud {release.version} unpacked; check `occ status -e` (make verify)")


def _assets_folders(inst: AppInstance) -> None:
    """<home>/apps (the instance's, 0750) and its copy for nginx (static files only, 0755)."""
    from pyinfra.operations import files

    files.directory(name=f"Create {apps_dir(inst)}", path=apps_dir(inst), user=inst.user,
                    group=inst.user, mode="0750", present=True)
    files.directory(name=f"Create {ASSETS_ROOT}", path=ASSETS_ROOT, user="root", group="root",
                    mode="0755", present=True)
    files.directory(name=f"Create {assets_dir(inst)}", path=assets_dir(inst), user=inst.user,
                    group=inst.user, mode="0755", present=True)


def _standin(inst: AppInstance, secrets: Any, tenant: Tenant) -> None:
    standin_role.standin(inst, standin_role.standin_config(
        inst,
        database={"driver": "pgsql", "host": DB_HOST, "port": DB_PORT, "name": inst.user,
                  "user": inst.user, "password": secrets.get(inst.secret("db_password"))},
        redis={"socket": RedisInstance(inst, "").socket, "user": RedisInstance(inst, "").acl_user,
               "password": secrets.get(inst.secret("redis_password"))},
        mail=standin_role.standin_mail(tenant),
    ))


def _config_files(tenant: Tenant, release: Artifact, secrets: Any) -> str:
    """The shared occ runner, our config fragment, an empty config.php before the install;
    what a stand-in left behind removed. Returns the rendered fragment."""
    from pyinfra import host
    from pyinfra.facts.files import File
    from pyinfra.operations import files

    from roles.remote_files import put_text

    inst = instance(tenant)
    put_text(OCC_SECRETS, occ_secrets_script())
    # What a stand-in left behind, if this instance was one before.
    files.file(name=f"Remove stand-in config of {inst.user}",
               path=standin_role.config_path(inst), present=False)
    files.file(name=f"Remove stand-in cron stamp of {inst.user}",
               path=f"{inst.data_dir}/standin-cron.txt", present=False)

    context = config_context(tenant, release, secrets.get(inst.secret("redis_password")), host.data)
    fragment = config_fragment(context)
    # Credentials inside (Redis): root writes it, the instance's group reads it.
    put_text(f"{inst.config_dir}/{CONFIG_FRAGMENT}", fragment, mode="0640", user="root", group=inst.user)
    config_php = f"{inst.config_dir}/config.php"
    if host.get_fact(File, path=config_php) is None:
        # occ refuses to run unless config.php exists and belongs to the user running it.
        files.put(name=f"Create an empty {config_php}", src=StringIO(EMPTY_CONFIG),
                  dest=config_php, user=inst.user, group=inst.user, mode="0640")
    return fragment


def _install_or_upgrade(tenant: Tenant, release: Artifact, secrets: Any) -> tuple[str, dict, list]:
    """`occ maintenance:install` (secrets through the 0600 job file) or `occ upgrade`, as
    config.php says. Returns the step, config.php's state and the operations that ran."""
    from pyinfra import host
    from pyinfra.operations import files, server
    from pyinfra.operations.util import any_changed

    from .facts import NextcloudConfigState

    inst = instance(tenant)
    occ = occ_prefix(inst, release)
    # Read from config.php, not through occ: facts are read before any operation runs, so
    # on an upgrade the new code is not unpacked yet and its occ cannot answer.
    state = host.get_fact(NextcloudConfigState, path=f"{inst.config_dir}/config.php") or {}
    step = lifecycle_step(state, release.version)
    changed = []
    if step == "install":
        job = f"{inst.tmp_dir}/occ-install.json"
        files.put(name=f"Upload the install job of {inst.user} (0600)",
                  src=StringIO(install_job(tenant, release, secrets.get(inst.secret("db_password")),
                                           secrets.get(inst.secret("admin_password")))),
                  dest=job, user=inst.user, group=inst.user, mode="0600")
        run_job = shlex.join([*as_instance_user(inst.user), *PHP_CLI, OCC_SECRETS, job])
        changed.append(server.shell(
            name=f"Install Nextcloud {release.version} for {tenant.slug} (occ maintenance:install)",
            commands=[f"{run_job}; rc=$?; rm -f {shlex.quote(job)}; exit $rc"],
        ))
    elif step == "upgrade":
        changed.append(server.shell(
            name=f"Upgrade Nextcloud of {tenant.slug} to {release.version} (occ upgrade)",
            commands=[f"{occ} upgrade --no-interaction"],
        ))
    if changed:
        # After an install or an upgrade only: these are documented post-upgrade steps.
        server.shell(
            name=f"Add missing database indices, columns and keys for {tenant.slug}",
            commands=[f"{occ} db:add-missing-indices --no-interaction",
                      f"{occ} db:add-missing-columns --no-interaction",
                      f"{occ} db:add-missing-primary-keys --no-interaction"],
            _if=any_changed(*changed),
        )
    return step, state, changed


def _converge(tenant: Tenant, release: Artifact, fragment: str, installed: bool) -> None:
    """Settings, admins and apps through occ, each guarded by what occ answers; config.php
    keys we no longer set deleted. `installed` False: the install runs in this deploy, so
    occ's answers (read before it) are replaced by what the install makes."""
    from pyinfra import host
    from pyinfra.operations import server
    from pyinfra.operations.util import any_changed

    from roles.prepared import prepared_fact
    from roles.remote_files import put_text

    from .facts import ManagedConfigKeys, OccJson, OccValue

    inst = instance(tenant)
    occ = occ_prefix(inst, release)

    def occ_step(name: str, argv: list[str]):
        return server.shell(name=name, commands=[f"{occ} {shlex.join(argv)}"])

    current_keys = fragment_keys(fragment)
    if installed:
        recorded = prepared_fact(ManagedConfigKeys, folder=MANAGED_KEYS_DIR).get(managed_keys_path(inst))
        for key in keys_to_delete(recorded, current_keys):
            occ_step(f"Nextcloud {tenant.slug}: delete {key} from config.php (no longer set by assotic)",
                     ["config:system:delete", key])
    put_text(managed_keys_path(inst), "".join(f"{key}\n" for key in current_keys))

    if host.get_fact(OccValue, occ=occ, args="config:app:get core backgroundjobs_mode") != "cron":
        occ_step(f"Run background jobs of {tenant.slug} from the system timer", ["background:cron"])
    quota = default_quota(tenant)
    if host.get_fact(OccValue, occ=occ, args="config:app:get files default_quota") != quota:
        occ_step(f"Set default quota {quota} for {tenant.slug}",
                 ["config:app:set", "files", "default_quota", f"--value={quota}"])
    users = host.get_fact(OccJson, occ=occ, args=f"user:list --limit={OCC_LIST_LIMIT} --output=json")
    groups = host.get_fact(OccJson, occ=occ, args=f"group:list --limit={OCC_LIST_LIMIT} --output=json")
    if not installed:
        users = {tenant.admins[0].username: tenant.admins[0].name}  # made by the install
        groups = {"admin": [tenant.admins[0].username]}
    for argv in admin_steps(tenant, users, groups):
        occ_step(f"Nextcloud {tenant.slug}: occ {argv[0]} {argv[-1]}", argv)
    app_ops = [occ_step(f"Nextcloud {tenant.slug}: occ {argv[0]} {argv[1]}", argv)
               for argv in app_steps(tenant, host.get_fact(OccJson, occ=occ, args="app:list --output=json"))]
    if app_ops:
        # Their static files are published for nginx now rather than at the timer's next run.
        server.shell(name=f"Copy the static files of {tenant.slug}'s Nextcloud apps for nginx",
                     commands=[f"systemctl start {assets_unit(inst)}.service"], _if=any_changed(*app_ops))
