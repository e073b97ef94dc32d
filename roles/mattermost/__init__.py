"""roles/mattermost: Mattermost servers ("instances"), one team per association on each.

Unlike Nextcloud and Paheko, Mattermost is deployed per INSTANCE, not per tenant: an
instance (assotic/mattermost.py) is declared in data and shared by the associations
that name it, or is an association's own. Per instance:
  Unix user, PostgreSQL role and database   mattermost_<name>
  home (data, config, log)                  /srv/assotic/<name>/mattermost
  systemd unit                              assotic-mattermost@<name>.service (a template)
  environment (MM_*, DSN with password)     /etc/assotic/mattermost/<name>.env, root:<user> 0640
  loopback port                             127.0.0.1:<port>, behind an nginx "proxy" vhost
  mmctl local-mode socket                   /run/assotic-mattermost-<name>/mattermost.sock (0600,
                                            in a 0700 folder of the user: nobody else reaches it)

Configuration: every setting assotic manages is an MM_* variable of the environment file
(Mattermost gives them precedence over config.json and shows them read-only in the System
Console). config.json itself (MM_CONFIG=<home>/config/config.json) belongs to the instance:
Mattermost writes its defaults there and admins' other choices; assotic never rewrites it,
so a deploy never fights the app and stays idempotent.

Teams and team admins: created through the local-mode socket as the service user, from the
tenant files (team name = slug with '-' for '_', display name = tenant name). `mmctl --local`
for facts, teams and memberships; user accounts by POSTing a 0600 JSON file to the same socket
with curl, because `mmctl user create` takes the password on its command line only. The
team-admin role is set in the instance's database: neither mmctl nor the local-mode socket has
a way to change a team member's roles. See docs/mattermost.md.

Without a release (missing_release = "standin"): the SAME unit, user, port, socket, env file,
database and vhost run templates/mattermost/mattermost-standin.py.j2 instead, with a loud
notice; the mmctl steps are skipped, loudly too.
"""

from __future__ import annotations

import json
import secrets as random_secrets
import shlex
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from assotic.artifacts import Artifact
from assotic.layout import LOCAL_SMTP_HOST, LOCAL_SMTP_PORT
from assotic.needs import AppInstance, BackupSpec, Database, HostNeeds, Vhost, as_instance_user
from assotic.tenants import Tenant
from roles.standin import STANDIN_ROOT
from assotic.templating import render

from assotic.layout import tenant_secret
from assotic.mattermost import APP, MattermostInstance, team_name

ENV_DIR = "/etc/assotic/mattermost"
UNIT_DIR = "/etc/systemd/system"
UNIT_TEMPLATE = f"{UNIT_DIR}/assotic-mattermost@.service"
USER_PREFIX = f"{APP}_"
STANDIN_FILE = f"{STANDIN_ROOT}/mattermost-standin.py"
STANDIN_BANNER = "assotic stand-in for Mattermost: NOT Mattermost (roles/mattermost, docs/mattermost.md)"
STANDIN_PACKAGES = ("python3", "python3-psycopg2", "curl")
# The database is reached over TCP on loopback with the instance's own password (the
# postgresql role's pg_hba rule for app roles), as in Mattermost's own DSN examples.
DB_HOST = "127.0.0.1"
DB_PORT = 5432
MAX_BODY_SIZE = "100M"  # nginx; Mattermost's default FileSettings.MaxFileSize is 100 MB

# Host-data knobs and their defaults (docs/mattermost.md).
DEFAULTS: dict[str, Any] = {
    # Team Edition's default is 50 per team; an association's team may be larger.
    "mattermost_max_users_per_team": 250,
    # Sign-up without an invitation: off, teams are private to their association.
    "mattermost_enable_open_server": False,
}


# -- Names ---------------------------------------------------------------------------------------


def unit_name(inst: MattermostInstance) -> str:
    return f"assotic-mattermost@{inst.name}.service"


def dropin_path(inst: MattermostInstance) -> str:
    return f"{UNIT_DIR}/assotic-mattermost@{inst.name}.service.d/assotic-release.conf"


def env_path(inst: MattermostInstance) -> str:
    return f"{ENV_DIR}/{inst.name}.env"


def run_dir(inst: MattermostInstance) -> str:
    return f"/run/assotic-mattermost-{inst.name}"


def local_socket(inst: MattermostInstance) -> str:
    return f"{run_dir(inst)}/mattermost.sock"


def config_file(inst: MattermostInstance) -> str:
    return f"{inst.app_instance.config_dir}/config.json"


def database(inst: MattermostInstance) -> Database:
    """The instance's database; its password is the instance's secret, not a tenant's."""
    return Database(name=inst.user, owner=inst.user, password_secret=inst.secret("db_password"))


# -- Needs ---------------------------------------------------------------------------------------


def mattermost_backup(inst: MattermostInstance) -> BackupSpec:
    """roles/backup: the instance's database (pg_dump while it runs: a dump is consistent by
    itself) and its config and data (uploads, plugins). A file uploaded during the run is at
    worst in the next night's snapshot. A shared instance keeps the longest retention of the
    associations on it."""
    home = inst.app_instance
    return BackupSpec(instance=home, paths=(home.data_dir, home.config_dir), postgres_db=inst.user,
                      retention_of=inst.tenants if inst.declared else ())


def mattermost_needs(inst: MattermostInstance, release: Artifact | None) -> HostNeeds:
    """What an instance asks of the shared roles: the same for the release and the stand-in
    (an nginx proxy vhost to its loopback port, a PostgreSQL database, its nightly backup)."""
    return HostNeeds(
        vhosts=[Vhost(domain=inst.domain, instance=inst.app_instance, kind="proxy",
                      upstream=inst.upstream, max_body_size=MAX_BODY_SIZE)],
        databases=[database(inst)],
        backups=[mattermost_backup(inst)],
    )


# -- Rendered files ------------------------------------------------------------------------------


def datasource(inst: MattermostInstance, password: str) -> str:
    """MM_SQLSETTINGS_DATASOURCE: a libpq URI, the password percent-encoded."""
    quoted = urllib.parse.quote(password, safe="")
    return (f"postgres://{inst.user}:{quoted}@{DB_HOST}:{DB_PORT}/{inst.user}"
            "?sslmode=disable&connect_timeout=10")


def _knob(data: Any, name: str) -> Any:
    value = data.get(name) if isinstance(data, Mapping) else getattr(data, name, None)
    return DEFAULTS[name] if value is None else value


def environment(inst: MattermostInstance, db_password: str, data: Any = None,
                sender: tuple[str, str | None] | None = None) -> list[tuple[str, str]]:
    """The MM_* variables of the instance's environment file, in a stable order.

    Every path Mattermost writes is under the instance's home: the release tree is shared
    and read-only (plugins, exports, logs would otherwise go to ./plugins, ./logs ...).
    https://docs.mattermost.com/configure/environment-variables.html
    """
    home = inst.app_instance
    data = data or {}
    max_users = _knob(data, "mattermost_max_users_per_team")
    if isinstance(max_users, bool) or not isinstance(max_users, int) or max_users < 1:
        raise ValueError(f"mattermost_max_users_per_team: a whole number >= 1; got {max_users!r}")
    open_server = _knob(data, "mattermost_enable_open_server")
    if not isinstance(open_server, bool):
        raise ValueError(f"mattermost_enable_open_server: True or False; got {open_server!r}")
    variables = [
        ("MM_CONFIG", config_file(inst)),
        ("MM_SQLSETTINGS_DRIVERNAME", "postgres"),
        ("MM_SQLSETTINGS_DATASOURCE", datasource(inst, db_password)),
        ("MM_SERVICESETTINGS_SITEURL", inst.url),
        ("MM_SERVICESETTINGS_LISTENADDRESS", inst.upstream),
        ("MM_SERVICESETTINGS_ENABLELOCALMODE", "true"),
        ("MM_SERVICESETTINGS_LOCALMODESOCKETLOCATION", local_socket(inst)),
        ("MM_FILESETTINGS_DIRECTORY", f"{home.data_dir}/files/"),
        ("MM_PLUGINSETTINGS_DIRECTORY", f"{home.data_dir}/plugins"),
        ("MM_PLUGINSETTINGS_CLIENTDIRECTORY", f"{home.data_dir}/client-plugins"),
        ("MM_EXPORTSETTINGS_DIRECTORY", f"{home.data_dir}/export"),
        ("MM_IMPORTSETTINGS_DIRECTORY", f"{home.data_dir}/import"),
        ("MM_LOGSETTINGS_FILELOCATION", home.log_dir),
        ("MM_NOTIFICATIONLOGSETTINGS_FILELOCATION", home.log_dir),
        ("MM_TEAMSETTINGS_MAXUSERSPERTEAM", str(max_users)),
        ("MM_TEAMSETTINGS_ENABLEOPENSERVER", "true" if open_server else "false"),
        *mail_variables(*(sender or inst.mail_sender([]))),
        ("ASSOTIC_MATTERMOST_INSTANCE", inst.name),
    ]
    for name, value in variables:
        if "\n" in value or '"' in value or "\\" in value or "'" in value:
            raise ValueError(f"{inst.name}: {name} cannot hold quotes, backslashes or newlines")
    return variables


def mail_variables(mail_from: str, reply_to: str | None) -> list[tuple[str, str]]:
    """EmailSettings: notifications and password resets through the host's Postfix on
    loopback (roles/mail), which relays them with TLS and a login; nothing of either here.
    Upstream's default server is localhost:10025 (model/config.go EmailSMTPDefaultPort),
    where nothing listens."""
    return [
        ("MM_EMAILSETTINGS_SENDEMAILNOTIFICATIONS", "true"),
        ("MM_EMAILSETTINGS_SMTPSERVER", LOCAL_SMTP_HOST),
        ("MM_EMAILSETTINGS_SMTPPORT", str(LOCAL_SMTP_PORT)),
        ("MM_EMAILSETTINGS_CONNECTIONSECURITY", ""),
        ("MM_EMAILSETTINGS_ENABLESMTPAUTH", "false"),
        ("MM_EMAILSETTINGS_FEEDBACKEMAIL", mail_from),
        ("MM_EMAILSETTINGS_REPLYTOADDRESS", reply_to or ""),
    ]


def env_file(inst: MattermostInstance, db_password: str, data: Any = None,
             sender: tuple[str, str | None] | None = None) -> str:
    context = {"name": inst.name, "user": inst.user,
               "variables": environment(inst, db_password, data, sender)}
    return render("mattermost/instance.env.j2", env=context)


def unit_template() -> str:
    # %i: the instance name, the slug of its AppInstance, so its home is spelled once.
    context = {"user_prefix": USER_PREFIX, "env_dir": ENV_DIR, "home": AppInstance("%i", APP).home}
    return render("mattermost/assotic-mattermost@.service.j2", mattermost=context)


def release_dropin(inst: MattermostInstance, release: Artifact | None) -> str:
    """What the unit runs: the release's bin/mattermost, or the stand-in."""
    if release is None:
        context = {"name": inst.name, "standin": True, "working_directory": STANDIN_ROOT,
                   "exec_start": f"/usr/bin/python3 {STANDIN_FILE}"}
    else:
        context = {"name": inst.name, "standin": False, "working_directory": release.install_dir,
                   "exec_start": f"{release.install_dir}/bin/mattermost"}
    return render("mattermost/assotic-release.conf.j2", release=context)


def standin_code() -> str:
    return render("mattermost/mattermost-standin.py.j2", standin={"banner": STANDIN_BANNER})


# -- Teams and admins, through the local-mode socket --------------------------------------------


def mmctl_prefix(inst: MattermostInstance, release: Artifact) -> str:
    """mmctl in local mode, as the instance's user (the only one who can open the socket)."""
    return shlex.join([*as_instance_user(inst.user), "env",
                       f"MMCTL_LOCAL_SOCKET_PATH={local_socket(inst)}",
                       f"{release.install_dir}/bin/mmctl", "--local"])


def local_api_prefix(inst: MattermostInstance) -> str:
    """curl on the local-mode socket, as the instance's user (local mode needs no token)."""
    return shlex.join([*as_instance_user(inst.user), "curl", "-sSf", "--max-time", "30",
                       "--unix-socket", local_socket(inst)])


@dataclass(frozen=True)
class TeamStep:
    """One change to make on an instance: what it is, for the operation name and the tests."""

    kind: str  # "create_team", "create_user", "add_member", "make_team_admin"
    team: str
    username: str = ""
    email: str = ""
    display_name: str = ""
    first_admin: bool = False


def team_steps(inst: MattermostInstance, tenants: list[Tenant], teams: list, users: list,
               members: Mapping[str, list], admins: Mapping[str, list]) -> list[TeamStep]:
    """What is missing, from facts: `team list --json`, `user list --all --json`, per team
    `user list --team <team> --json`, and the team admins read from the database
    (MattermostTeamAdmins: {team: [username, e-mail, ...]}). Pure and unit-tested.

    A user is matched by e-mail or username (an admin of two associations is one user, in
    two teams), and named by the username the account really has. Every admin the tenant
    file declares is made a team admin (scheme_admin) whenever they are not one, on every
    deploy: the tenant file says who the association's admins are, so a promotion that
    failed, or an admin who was already a plain member, is caught up by the next deploy. To
    take someone's admin role away, remove them from `admins:`; assotic never demotes
    anyone, so admins the association promoted itself stay admins.
    """
    known_teams = {t.get("name") for t in teams if isinstance(t, dict)}
    accounts = {}
    for user in users:
        if isinstance(user, dict) and user.get("username"):
            accounts[user["username"]] = user["username"]
            if user.get("email"):
                accounts[user["email"].lower()] = user["username"]
    steps: list[TeamStep] = []
    for tenant in tenants:
        team = team_name(tenant.slug)
        if team not in known_teams:
            steps.append(TeamStep("create_team", team, display_name=tenant.name))
        in_team = {u.get("username") for u in members.get(team, []) if isinstance(u, dict)}
        in_team |= {(u.get("email") or "").lower() for u in members.get(team, []) if isinstance(u, dict)}
        team_admins = {str(name).lower() for name in admins.get(team, [])}
        for index, admin in enumerate(tenant.admins):
            email = admin.email.lower()
            username = accounts.get(email) or accounts.get(admin.username)
            if username is None:
                steps.append(TeamStep("create_user", team, admin.username, admin.email, admin.name,
                                      first_admin=index == 0))
                username = accounts[admin.username] = accounts[email] = admin.username
            if username not in in_team and email not in in_team:
                steps.append(TeamStep("add_member", team, username, admin.email))
            if username not in team_admins and email not in team_admins:
                steps.append(TeamStep("make_team_admin", team, username, admin.email))
    return steps


def _sql_text(value: str) -> str:
    """An SQL string literal (quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


def team_admin_sql(step: TeamStep) -> str:
    """Make one team member a team admin, in the instance's own database. Local mode has no
    route for it (docs/mattermost.md); the columns are those Mattermost's store writes. One
    row back, or none when the account is not an active member of the team."""
    return ("UPDATE teammembers SET schemeadmin = true WHERE deleteat = 0 AND teamid = "
            f"(SELECT id FROM teams WHERE name = {_sql_text(step.team)} AND deleteat = 0) AND userid = "
            f"(SELECT id FROM users WHERE username = {_sql_text(step.username)}) RETURNING userid")


def new_user_json(step: TeamStep, password: str) -> str:
    """The body of POST /api/v4/users (a 0600 file, deleted after use)."""
    first, _, last = step.display_name.partition(" ")
    return json.dumps({"username": step.username, "email": step.email, "password": password,
                       "first_name": first, "last_name": last, "email_verified": True}) + "\n"


def step_commands(inst: MattermostInstance, release: Artifact, step: TeamStep,
                  body_file: str | None = None) -> list[str]:
    """Shell for one step. No password is ever on a command line: it is in `body_file`."""
    mmctl = mmctl_prefix(inst, release)
    api = local_api_prefix(inst)
    base = "http://localhost/api/v4"
    if step.kind == "create_team":
        return [f"{mmctl} team create --private "
                f"{shlex.join(['--name', step.team, '--display-name', step.display_name])}"]
    if step.kind == "create_user":
        assert body_file is not None
        post = f"{api} -X POST -H 'Content-Type: application/json' --data-binary @{body_file} {base}/users"
        commands = [f"{post} >/dev/null; rc=$?; rm -f {body_file}; exit $rc"]
        if not step.first_admin:
            # Their password is random and known to nobody: they choose theirs from the
            # reset link Mattermost e-mails them (needs the instance's SMTP settings).
            reset = json.dumps({"email": step.email})
            # Mattermost answers once the host's Postfix has the mail (roles/mail, installed
            # before the apps): a failure here is a real one, and stops the deploy.
            commands.append(f"{api} -X POST -H 'Content-Type: application/json' "
                            f"--data {shlex.quote(reset)} {base}/users/password/reset/send >/dev/null")
        return commands
    if step.kind == "add_member":
        # mmctl exits 0 even when the server refuses the member (team_users.go prints the error
        # and returns nil); the make_team_admin step after it fails loudly in that case.
        return [f"{mmctl} team users add {shlex.quote(step.team)} {shlex.quote(step.username)}"]
    if step.kind == "make_team_admin":
        # As PostgreSQL's superuser over its local socket (peer authentication, no password).
        # A user who is logged in sees the role once Mattermost reloads their session
        # (ServiceSettings.SessionCacheInMinutes, 10 by default); a new account has no session yet.
        psql = shlex.join(["runuser", "-u", "postgres", "--", "psql", "-XAtq", "-v", "ON_ERROR_STOP=1",
                           "-d", inst.user, "-c", team_admin_sql(step)])
        missing = shlex.quote(f"assotic: {step.username} is not a member of team {step.team}")
        return [f"test -n \"$({psql})\" || {{ echo {missing} >&2; exit 1; }}"]
    raise ValueError(f"unknown step {step.kind!r}")


# -- Deploy --------------------------------------------------------------------------------------


_code_scheduled: set[tuple[str, str]] = set()
# The operation writing each file that every instance of a host shares (the unit template,
# the stand-in's script), by (host, path): planned once, and every instance's restart follows
# it. A second put_text of the same file plans nothing the instance's restart can follow (its
# stamp was read before the first wrote it): seen in the lab, the second instance restarted
# one deploy late (the template) or ran the old script (the stand-in's, instance ulap).
_shared_file_ops: dict = {}


def _shared_file(path: str, content: str, mode: str = "0644"):
    """The one operation writing `path`, shared by every instance of this host."""
    from pyinfra import host

    from roles.remote_files import put_text

    if (host.name, path) not in _shared_file_ops:
        _shared_file_ops[(host.name, path)] = put_text(path, content, mode=mode)
    return _shared_file_ops[(host.name, path)]


def deploy(app, secrets: Any) -> None:
    """The app-role interface (roles/plan.py APP_ROLES): deploy one planned instance."""
    mattermost(app.instance, app.release, app.release_path, secrets, app.tenants)


def mattermost(inst: MattermostInstance, release: Artifact | None, local_release_path,
               secrets: Any, tenants: tuple[Tenant, ...] | list[Tenant]) -> None:
    """Install, configure and start one instance, then its teams (after the shared roles ran).

    `release` None: the stand-in runs in the same unit (the caller checked the policy).
    `tenants`: the associations on the instance, one team each (the plan's AppPlan.tenants).
    """
    from pyinfra import host

    changed = _install_code(inst, release, local_release_path)
    _create_data_folders(inst)
    changed += _install_configuration(inst, release, secrets, inst.mail_sender(list(tenants)))
    # The stand-in's script is not named by the drop-in: its own date tells a restart is due.
    _restart_and_enable(inst, changed, code_files=[STANDIN_FILE] if release is None else [])

    if release is None:
        host.noop(f"!!! mattermost instance {inst.name}: the stand-in has no mmctl; teams "
                  f"{', '.join(team_name(t.slug) for t in tenants) or '(none)'} and their admins "
                  "were NOT created (provide the release and deploy again)")
        return
    _create_teams_and_admins(inst, release, tenants, secrets)


def _install_code(inst: MattermostInstance, release: Artifact | None, local_release_path) -> list:
    """What the unit runs: the release tree (one per version on a host, shared by its
    instances) and curl for the local-mode API, or the stand-in. Returns the operations
    that changed it: the unit restarts after them."""
    from pyinfra.operations import apt

    from roles.releases import install_release

    if release is None:
        return _install_standin(inst)
    changed = []
    unpacked = install_release(release, local_release_path)
    if unpacked is not None:
        changed.append(unpacked)
    apt.packages(name="Install curl (the local-mode API client)", packages=["curl"],
                 cache_time=86400, update=True)
    return changed


def _install_standin(inst: MattermostInstance) -> list:
    """The stand-in instead of the release, said loudly: its packages and folder once per host
    and run, its script written once for all the host's instances (_shared_file)."""
    from pyinfra import host
    from pyinfra.operations import apt, files

    host.noop(f"!!! mattermost instance {inst.name} ({inst.domain}): the real release was not "
              "provided; running the assotic STAND-IN in its unit instead "
              "(missing_release = \"standin\")")
    if (host.name, "standin") not in _code_scheduled:
        _code_scheduled.add((host.name, "standin"))
        apt.packages(name="Install what the Mattermost stand-in needs (python3-psycopg2, curl)",
                     packages=list(STANDIN_PACKAGES), cache_time=86400, update=True)
        files.directory(name=f"Create {STANDIN_ROOT}", path=STANDIN_ROOT, user="root",
                        group="root", mode="0755", present=True)
    return [_shared_file(STANDIN_FILE, standin_code(), mode="0755")]


def _create_data_folders(inst: MattermostInstance) -> None:
    """The folders Mattermost writes, which the environment file points at (its home and its
    data, log and config dirs come from instance_accounts)."""
    from pyinfra.operations import files

    home = inst.app_instance
    for sub in ("files", "plugins", "client-plugins", "export", "import"):
        files.directory(name=f"Create {home.data_dir}/{sub}", path=f"{home.data_dir}/{sub}",
                        user=inst.user, group=inst.user, mode="0750", present=True)


def _install_configuration(inst: MattermostInstance, release: Artifact | None, secrets: Any,
                           sender: tuple[str, str | None]) -> list:
    """What the unit reads: the instance's environment file, the host's one unit template and
    the instance's release drop-in. Returns the operations that changed them (the restart's)."""
    from pyinfra import host
    from pyinfra.operations import files

    from roles.remote_files import put_text

    files.directory(name=f"Create {ENV_DIR}", path=ENV_DIR, user="root", group="root",
                    mode="0755", present=True)
    # Credentials inside: root writes it, the instance's group (its user only) reads it.
    changed = [put_text(env_path(inst), env_file(inst, secrets.get(inst.secret("db_password")),
                                                 host.data, sender), mode="0640", user="root",
                        group=inst.user)]
    changed.append(_shared_file(UNIT_TEMPLATE, unit_template()))
    changed.append(put_text(dropin_path(inst), release_dropin(inst, release)))
    return changed


def _restart_and_enable(inst: MattermostInstance, changed: list, code_files: list[str]) -> None:
    """Restart the unit after new code, unit or environment, and keep it enabled and running."""
    from pyinfra.operations import systemd

    from roles.remote_files import reload_after

    # A shell restart: systemd.service(restarted=True) skips a unit that was not running
    # when facts were read (the first deploy). `restart` starts a stopped unit too, and
    # with Type=notify it returns once the server said it is ready. The drop-in names the
    # release, so a deploy killed after new code or files and before this restart is
    # caught up by the next one (reload_after).
    reload_after(f"Restart {unit_name(inst)} (new code, unit or environment)",
                 f"systemctl daemon-reload && systemctl restart {unit_name(inst)}", changed,
                 stamp=unit_name(inst),
                 covers=[env_path(inst), UNIT_TEMPLATE, dropin_path(inst), *code_files])
    systemd.service(name=f"Enable and start {unit_name(inst)}", service=unit_name(inst),
                    running=True, enabled=True)


def _create_teams_and_admins(inst: MattermostInstance, release: Artifact, tenants: list[Tenant],
                             secrets: Any) -> None:
    """Each association's team and admins, only what the instance lacks (team_steps), in the
    order team_steps gives: a team before its members, an account before its membership."""
    teams, users, members, admins = _team_facts(inst, release, tenants)
    by_team = {team_name(t.slug): t for t in tenants}
    for step in team_steps(inst, tenants, teams, users, members, admins):
        _run_team_step(inst, release, step, by_team, secrets)


def _team_facts(inst: MattermostInstance, release: Artifact, tenants: list[Tenant]) -> tuple:
    """What the instance has, read before the run: its teams and accounts and each team's
    members (mmctl on the local socket), and the team admins (from its database)."""
    from pyinfra import host

    from .facts import MattermostTeamAdmins, MmctlJson

    mmctl = mmctl_prefix(inst, release)
    teams = host.get_fact(MmctlJson, mmctl=mmctl, args="team list")
    users = host.get_fact(MmctlJson, mmctl=mmctl, args="user list --all")
    members = {team_name(t.slug): host.get_fact(MmctlJson, mmctl=mmctl,
                                                 args=f"user list --all --team {team_name(t.slug)}")
               for t in tenants}
    admins = host.get_fact(MattermostTeamAdmins, database=inst.user)
    return teams, users, members, admins


def _run_team_step(inst: MattermostInstance, release: Artifact, step: TeamStep,
                   by_team: Mapping[str, Tenant], secrets: Any) -> None:
    """One step as one shell operation; a new account's body is uploaded just before it."""
    from pyinfra.operations import server

    body_file = None
    if step.kind == "create_user":
        body_file = _upload_new_account(inst, step, by_team[step.team], secrets)
    target = step.username or step.display_name
    server.shell(name=f"Mattermost {inst.name}: {step.kind.replace('_', ' ')} {step.team} {target}",
                 commands=step_commands(inst, release, step, body_file))


def _upload_new_account(inst: MattermostInstance, step: TeamStep, tenant: Tenant, secrets: Any) -> str:
    """The new account's JSON in a 0600 file of the instance's user, so that its password is
    on no command line; returns the file's path. The first admin gets the association's
    admin password from the secrets store, the others a random one (they reset it)."""
    from io import StringIO

    from pyinfra.operations import files

    password = (secrets.get(tenant_secret(tenant.slug, APP, "admin_password")) if step.first_admin
                else random_secrets.token_urlsafe(24))
    body_file = f"{inst.app_instance.tmp_dir}/mattermost-new-user.json"
    files.put(name=f"Upload the new account of {step.username} for {inst.name} (0600)",
              src=StringIO(new_user_json(step, password)), dest=body_file,
              user=inst.user, group=inst.user, mode="0600")
    return body_file
