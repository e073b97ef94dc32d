"""roles/paheko: one Paheko (members and accounting) per association, on shared read-only code.

Pure part: `paheko_needs(tenant, release)` (vhost, PHP pool, timers; Paheko keeps its data
in SQLite under <home>/data, so it asks no PostgreSQL database and no Redis) and the
render functions. The `paheko` deploy function then writes the config and creates the
instance headlessly with Paheko's own CLI; deploy.py runs it AFTER the shared roles.

How one code copy serves many associations (evidence in docs/apps.md):
- include/init.php turns every PAHEKO_* entry of $_ENV into a constant before reading
  CONFIG_FILE (from 1.3.13 on: `make check` refuses an older pin, assotic/preflight.py);
  the pool sets env[PAHEKO_CONFIG_FILE] and, since Debian's php.ini has
  variables_order = "GPCS" (no E, so $_ENV would be empty), variables_order = "EGPCS";
- bin/paheko takes `--config <file>` (and `--root`; its `--url` option is parsed but
  unused), so timers and the init and upgrade steps name the same config file;
- PLUGINS_ROOT defaults to DATA_ROOT/plugins, but the release ships its plugins in
  <code>/data/plugins: the config names that folder of the release it is rendered for.

Lifecycle, from the database's own version (PRAGMA user_version, roles/paheko/facts.py):
none yet: `bin/paheko init`; older than the code: `bin/paheko upgrade` (the CLI refuses
`cron` and `queue` until then, and the web would run the upgrade for the first visitor);
newer: refused. Paheko has no maintenance mode to switch around it.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

from assotic.artifacts import Artifact
from assotic.layout import LOCAL_SMTP_HOST, LOCAL_SMTP_PORT
from assotic.needs import AppInstance, BackupSpec, HostNeeds, PhpPool, Timer, Vhost, as_instance_user
from assotic.tenants import Tenant
from roles import standin as standin_role
from assotic.templating import render, stable_minute

APP = "paheko"
CONFIG_NAME = "config.local.php"
DB_NAME = "association.sqlite"  # Paheko's default DB_FILE under DATA_ROOT
COUNTRY = "FR"
QUEUE_EVERY = "*:*:00"  # the e-mail queue, every minute
# CLI.php `queue run`: exit status 2 while messages are still waiting (e.g. a rate limit).
QUEUE_STILL_WAITING = 2
# CLI.php `upgrade`: exit status 2 when it upgraded the database, 0 when it had nothing to do.
UPGRADED = 2


# What Paheko needs of PHP besides its core (seen running 1.3.22.1 on Debian 12, LAB.md):
# its data is SQLite; intl and mbstring for text, xml for exports.
PHP_EXTENSIONS = ("intl", "mbstring", "sqlite3", "xml")

def instance(tenant: Tenant) -> AppInstance:
    return AppInstance(tenant.slug, APP)


def domain(tenant: Tenant) -> str:
    return tenant.apps.paheko.domain


def config_path(inst: AppInstance) -> str:
    return f"{inst.config_dir}/{CONFIG_NAME}"


def db_file(inst: AppInstance) -> str:
    return f"{inst.data_dir}/{DB_NAME}"


def cron_unit(inst: AppInstance) -> str:
    return f"assotic-paheko-cron-{inst.slug}"


def queue_unit(inst: AppInstance) -> str:
    return f"assotic-paheko-queue-{inst.slug}"


def daily_at(inst: AppInstance) -> str:
    """Daily, at 04:MM where MM comes from the slug: spread out, and stable across deploys."""
    return f"*-*-* 04:{stable_minute('paheko-cron', inst.slug):02d}:00"


def paheko_cli(inst: AppInstance, release: Artifact, *args: str) -> tuple[str, ...]:
    return ("/usr/bin/php", f"{release.install_dir}/bin/paheko", "--config", config_path(inst), *args)


def paheko_cli_as_user(inst: AppInstance, release: Artifact, *args: str) -> str:
    """bin/paheko as the instance's user, with the instances' umask, as one shell command."""
    return shlex.join([*as_instance_user(inst.user), *paheko_cli(inst, release, *args)])


def schema_version(version: str) -> int:
    """A release number in Paheko's database encoding (DB::parseVersion): 1.3.18 -> 1031800,
    a corrective release 1.3.22.1 -> 1032276."""
    parts = version.split(".")
    if not 3 <= len(parts) <= 4 or not all(p.isdigit() for p in parts):
        raise ValueError(f"paheko {version!r}: expected a stable release number such as 1.3.18")
    major, minor, release = (int(p) for p in parts[:3])
    corrective = int(parts[3]) + 75 if len(parts) == 4 else 0
    return major * 1_000_000 + minor * 10_000 + release * 100 + corrective


def paheko_needs(tenant: Tenant, release: Artifact | None) -> HostNeeds:
    """What this tenant's Paheko asks of the shared roles (`release` None: the stand-in)."""
    inst = instance(tenant)
    if release is None:
        return HostNeeds(
            vhosts=[standin_role.standin_vhost(domain(tenant), inst)],
            pools=[standin_role.standin_pool(inst, PHP_EXTENSIONS)],
            timers=[standin_role.standin_timer(cron_unit(inst), inst, daily_at(inst))],
            backups=[paheko_backup(tenant, None)],
        )
    code = release.install_dir
    return HostNeeds(
        vhosts=[Vhost(domain=domain(tenant), instance=inst, kind="paheko", web_root=f"{code}/www",
                      php_socket=inst.php_socket, max_body_size="256M")],
        pools=[PhpPool(
            instance=inst,
            code_dirs=(code,),
            env=(("PAHEKO_CONFIG_FILE", config_path(inst)),),
            extensions=PHP_EXTENSIONS,
            admin_values=(
                # E first: init.php reads PAHEKO_CONFIG_FILE from $_ENV.
                ("variables_order", "EGPCS"),
                ("upload_max_filesize", "256M"),
                ("post_max_size", "256M"),
            ),
        )],
        timers=[
            Timer(unit=cron_unit(inst), description=f"Paheko daily tasks for {tenant.slug}",
                  user=inst.user, command=paheko_cli(inst, release, "cron"),
                  on_calendar=daily_at(inst), working_directory=inst.home,
                  writable_paths=(inst.home,)),
            # Messages still waiting are not a failure: the next run sends them.
            Timer(unit=queue_unit(inst), description=f"Paheko e-mail queue for {tenant.slug}",
                  user=inst.user, command=paheko_cli(inst, release, "queue", "run", "--quiet"),
                  on_calendar=QUEUE_EVERY, working_directory=inst.home, writable_paths=(inst.home,),
                  success_exit_status=(QUEUE_STILL_WAITING,)),
        ],
        backups=[paheko_backup(tenant, release)],
    )


def paheko_backup(tenant: Tenant, release: Artifact | None) -> BackupSpec:
    """What roles/backup saves of this Paheko: config and data, with the SQLite database
    copied by `VACUUM INTO` (a consistent copy while Paheko runs), never the live file.
    The stand-in keeps its SQLite file in the same data folder, under another name."""
    inst = instance(tenant)
    live = db_file(inst) if release is not None else f"{inst.data_dir}/standin.sqlite"
    notices = () if release is not None else (f"paheko {inst.slug} is the stand-in",)
    return BackupSpec(instance=inst, paths=(inst.data_dir, inst.config_dir), sqlite=(live,),
                      notices=notices)


@dataclass(frozen=True)
class PahekoContext:
    """What templates/paheko/*.j2 see as `paheko`."""

    tenant_name: str
    url: str
    data_root: str
    plugins_root: str
    secret_key: str
    secret_name: str
    mail_from: str
    smtp_host: str = LOCAL_SMTP_HOST
    smtp_port: int = LOCAL_SMTP_PORT


def config_local(tenant: Tenant, secret_key: str, release: Artifact) -> str:
    inst = instance(tenant)
    context = PahekoContext(tenant_name=tenant.name, url=f"https://{domain(tenant)}/",
                            data_root=inst.data_dir, plugins_root=f"{release.install_dir}/data/plugins",
                            secret_key=secret_key, secret_name=inst.secret("secret_key"),
                            mail_from=tenant.mail_from)
    return render("paheko/config.local.php.j2", paheko=context)


def init_command(tenant: Tenant, release: Artifact, password_file: str) -> str:
    """`bin/paheko init` as the tenant's user; the password is read from a 0600 file,
    which is removed whatever happens."""
    inst = instance(tenant)
    admin = tenant.admins[0]
    init = paheko_cli_as_user(inst, release, "init", "--country", COUNTRY, "--orgname", tenant.name,
                              "--name", admin.name, "--email", admin.email,
                              "--password-file", password_file)
    return f"{init}; rc=$?; rm -f {shlex.quote(password_file)}; exit $rc"


def upgrade_command(tenant: Tenant, release: Artifact) -> str:
    upgrade = paheko_cli_as_user(instance(tenant), release, "upgrade")
    return f"{upgrade}; rc=$?; [ $rc -eq 0 ] || [ $rc -eq {UPGRADED} ]"


def lifecycle_step(database_version: int | None, release: Artifact) -> str:
    """"install", "upgrade" or "current", from the database's version and the pinned release."""
    if database_version is None:
        return "install"
    wanted = schema_version(release.version)
    if database_version < wanted:
        return "upgrade"
    if database_version > wanted:
        raise ValueError(f"Paheko's database is at version {database_version}, newer than the pin "
                         f"{release.version} ({wanted}): Paheko cannot be downgraded; restore a "
                         "snapshot from before the upgrade (make restore) or pin the version that runs")
    return "current"


def deploy(app, secrets: Any) -> None:
    """The app-role interface (roles/plan.py APP_ROLES): deploy one planned instance."""
    paheko(app.tenant, app.release, app.release_path, secrets)


def paheko(tenant: Tenant, release: Artifact | None, local_release_path, secrets: Any) -> None:
    """Write the config and create the instance once (after the shared roles ran)."""
    from io import StringIO

    from pyinfra import host
    from pyinfra.operations import files, server

    from roles.releases import install_release
    from roles.paheko.facts import PahekoSchemaVersion
    from roles.remote_files import put_text

    inst = instance(tenant)
    if release is None:
        standin_role.standin(inst, standin_role.standin_config(
            inst, database={"driver": "sqlite", "path": f"{inst.data_dir}/standin.sqlite"},
            mail=standin_role.standin_mail(tenant)))
        return

    install_release(release, local_release_path)
    for leftover in (standin_role.config_path(inst), f"{inst.data_dir}/standin-cron.txt",
                     f"{inst.data_dir}/standin.sqlite"):
        files.file(name=f"Remove stand-in leftover {leftover}", path=leftover, present=False)
    put_text(config_path(inst), config_local(tenant, secrets.get(inst.secret("secret_key")), release),
             mode="0640", user="root", group=inst.user)
    step = lifecycle_step(host.get_fact(PahekoSchemaVersion, user=inst.user, db_file=db_file(inst)),
                          release)
    if step == "upgrade":
        server.shell(name=f"Upgrade the Paheko database of {tenant.slug} to {release.version} "
                          "(bin/paheko upgrade)", commands=[upgrade_command(tenant, release)])
    # Guarded: `init` refuses an existing database anyway, but a second deploy must not
    # even try (and must not upload the password file again).
    if step == "install":
        password_file = f"{inst.tmp_dir}/paheko-init-password"
        files.put(name=f"Upload the first admin's password for {inst.user} (0600)",
                  src=StringIO(secrets.get(inst.secret("admin_password")) + "\n"),
                  dest=password_file, user=inst.user, group=inst.user, mode="0600")
        server.shell(name=f"Create the Paheko instance of {tenant.slug} (bin/paheko init)",
                     commands=[init_command(tenant, release, password_file)])
