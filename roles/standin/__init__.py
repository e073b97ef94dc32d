"""roles/standin: a small, clearly named PHP app that stands in for a release we do not have.

When a pinned release cannot be found and data says `missing_release = "standin"` (the
lab), the app role installs this instead of the real app, on the same vhost, PHP pool,
database and Redis the real app would use. Its page answers JSON saying what it could
reach (see templates/standin/index.php.j2), and its cron job, run by the same kind of
timer, writes a timestamp. It never pretends to be the app: every answer says
"standin": true and why.

One shared read-only copy lives in /opt/assotic/standin/; each instance has its own
config file <home>/config/standin.json (root:<user> 0640: it holds the credentials),
named to the pool by env[ASSOTIC_STANDIN_CONFIG].
"""

from __future__ import annotations

import json
from typing import Any

from assotic.layout import LOCAL_SMTP_HOST, LOCAL_SMTP_PORT
from assotic.needs import AppInstance, PhpPool, Timer, Vhost

from assotic.templating import render

STANDIN_ROOT = "/opt/assotic/standin"
CODE_FILES = ("index.php", "cron.php", "mail.php")
CONFIG_NAME = "standin.json"
CONFIG_ENV = "ASSOTIC_STANDIN_CONFIG"
BANNER = "assotic stand-in app: NOT the real application (roles/standin, docs/apps.md)"

# Hosts whose shared stand-in code was already scheduled in this run (one copy per host).
_code_scheduled: set[str] = set()


def config_path(instance: AppInstance) -> str:
    return f"{instance.config_dir}/{CONFIG_NAME}"


def code_files() -> dict[str, str]:
    """The shared code: file name -> content."""
    context = {"banner": BANNER}
    return {name: render(f"standin/{name}.j2", standin=context) for name in CODE_FILES}


def standin_config(instance: AppInstance, database: dict[str, Any],
                   redis: dict[str, Any] | None = None, mail: dict[str, Any] | None = None) -> str:
    """<home>/config/standin.json: what the stand-in checks, with the credentials to do it.
    `mail`: {host, port, from, reply_to}, the SMTP settings the real app gets (mail.php)."""
    config: dict[str, Any] = {
        "app": instance.app,
        "tenant": instance.slug,
        "user": instance.user,
        "data_dir": instance.data_dir,
        "database": database,
    }
    if mail is not None:
        config["mail"] = mail
    if redis is not None:
        config["redis"] = redis
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


def standin_mail(tenant) -> dict[str, Any]:
    """The SMTP settings the real app of `tenant` gets: the host's Postfix, its sender."""
    return {"host": LOCAL_SMTP_HOST, "port": LOCAL_SMTP_PORT, "from": tenant.mail_from,
            "reply_to": tenant.mail_reply_to}


def standin_pool(instance: AppInstance, extensions: tuple[str, ...],
                 admin_values: tuple[tuple[str, str], ...] = ()) -> PhpPool:
    """The pool the real app would get, with the same PHP extensions, serving the stand-in."""
    return PhpPool(
        instance=instance,
        code_dirs=(STANDIN_ROOT,),
        env=((CONFIG_ENV, config_path(instance)),),
        admin_values=admin_values,
        extensions=extensions,
    )


def standin_vhost(domain: str, instance: AppInstance) -> Vhost:
    return Vhost(domain=domain, instance=instance, kind="standin", web_root=STANDIN_ROOT,
                 php_socket=instance.php_socket)


def standin_timer(unit: str, instance: AppInstance, on_calendar: str) -> Timer:
    """Same unit name as the real app's cron timer: switching to the real app replaces it."""
    return Timer(
        unit=unit,
        description=f"assotic stand-in cron for {instance.app} of {instance.slug}",
        user=instance.user,
        command=("/usr/bin/php", f"{STANDIN_ROOT}/cron.php", config_path(instance)),
        on_calendar=on_calendar,
        working_directory=instance.home,
        writable_paths=(instance.home,),
    )


def standin(instance: AppInstance, config_json: str) -> None:
    """pyinfra steps: the shared code (once per host) and this instance's config file."""
    from pyinfra import host
    from pyinfra.operations import files

    from roles.remote_files import put_text

    host.noop(f"!!! {instance.app} for {instance.slug}: the real release was not provided; "
              f"installing the assotic STAND-IN app instead (missing_release = \"standin\")")
    if host.name not in _code_scheduled:
        _code_scheduled.add(host.name)
        files.directory(name=f"Create {STANDIN_ROOT}", path=STANDIN_ROOT, user="root",
                        group="root", mode="0755", present=True)
        for name, content in code_files().items():
            put_text(f"{STANDIN_ROOT}/{name}", content)
    # Credentials inside: readable by root and the instance's group only, never by others.
    put_text(config_path(instance), config_json, mode="0640", user="root", group=instance.user)
