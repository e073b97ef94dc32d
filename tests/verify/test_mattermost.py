"""Mattermost instances on the web hosts: the same checks for the lab and production.

An instance runs either the real release or the assotic stand-in (its unit's drop-in says
which): the proxy, websocket location, database, unit, user, port and env file are checked
for both; the teams (mmctl) only for a real release, and skipped with the reason otherwise.
"""

from __future__ import annotations

import json

import pytest

from roles import mattermost
from roles.mattermost.facts import MattermostTeamAdmins
from assotic.mattermost import team_name

pytestmark = pytest.mark.hosts_in("web")


def instances(data, pyinfra_host):
    found = data.platform.mattermost_on(pyinfra_host.name)
    if not found:
        pytest.skip(f"no Mattermost instance on {pyinfra_host.name}")
    return found


def is_standin(host, inst) -> bool:
    return mattermost.STANDIN_FILE in host.file(mattermost.dropin_path(inst)).content_string


def curl(domain: str, path: str, *extra: str) -> str:
    return (f"curl -sk --max-time 10 {' '.join(extra)} --resolve {domain}:443:127.0.0.1 "
            f"https://{domain}{path}")


def test_each_instance_runs_as_its_own_user(host, data, pyinfra_host):
    for inst in instances(data, pyinfra_host):
        service = host.service(mattermost.unit_name(inst))
        assert service.is_running and service.is_enabled, inst.name
        pid = host.check_output(f"systemctl show -p MainPID --value {mattermost.unit_name(inst)}")
        assert host.check_output(f"ps -o user= -p {pid}").strip() == inst.user


def test_each_instance_listens_on_loopback_only(host, data, pyinfra_host):
    for inst in instances(data, pyinfra_host):
        listeners = host.check_output(f"ss -Htlnp 'sport = :{inst.port}'").splitlines()
        assert listeners, f"nothing listens on port {inst.port}"
        for line in listeners:
            local = line.split()[3]
            assert local == f"127.0.0.1:{inst.port}", line


def test_env_file_is_readable_by_the_instance_only(host, data, pyinfra_host):
    for inst in instances(data, pyinfra_host):
        env = host.file(mattermost.env_path(inst))
        assert (env.user, env.group, env.mode) == ("root", inst.user, 0o640)
        assert "MM_SQLSETTINGS_DATASOURCE=postgres://" in env.content_string
        # The password is in this file only: never in the unit or on a command line.
        assert "MM_SQLSETTINGS_DATASOURCE" not in host.file(mattermost.dropin_path(inst)).content_string
        pid = host.check_output(f"systemctl show -p MainPID --value {mattermost.unit_name(inst)}")
        assert "postgres://" not in host.check_output(f"cat /proc/{pid}/cmdline | tr '\\0' ' '")


def test_local_mode_socket_is_the_users_only(host, data, pyinfra_host):
    for inst in instances(data, pyinfra_host):
        folder = host.file(mattermost.run_dir(inst))
        assert (folder.user, folder.mode) == (inst.user, 0o700)
        sock = host.file(mattermost.local_socket(inst))
        assert sock.is_socket and sock.user == inst.user and sock.mode == 0o600


def test_database_role_reaches_its_own_database_only(host, data, pyinfra_host):
    for inst in instances(data, pyinfra_host):
        env = mattermost.env_path(inst)
        dsn = f"$(sed -n 's/^MM_SQLSETTINGS_DATASOURCE=//p' {env})"
        own = host.run(f"psql -XqtA \"{dsn}\" -c 'SELECT current_database()'")
        assert own.rc == 0 and own.stdout.strip() == inst.user, own.stderr
        others = [d.name for d in data.platform.mattermost if d.host == pyinfra_host.name
                  and d.name != inst.name] or ["postgres"]
        for other in others:
            target = other if other == "postgres" else f"mattermost_{other}"
            # Same credentials, another database: refused by pg_hba (or by REVOKE CONNECT).
            swap = f"$(echo \"{dsn}\" | sed 's#/{inst.user}?#/{target}?#')"
            refused = host.run(f"psql -XqtA \"{swap}\" -c 'SELECT 1'")
            assert refused.rc != 0, f"{inst.user} reached database {target}"


def test_ping_answers_through_nginx(host, data, pyinfra_host):
    if host.run("command -v nginx").rc != 0:
        pytest.skip("nginx is not installed (the web roles are not deployed here)")
    for inst in instances(data, pyinfra_host):
        answer = host.run(curl(inst.domain, "/api/v4/system/ping"))
        assert answer.rc == 0, answer.stderr
        body = json.loads(answer.stdout)
        assert body["status"] == "OK", body
        if is_standin(host, inst):
            assert body["standin"] is True and body["instance"] == inst.name
            assert body["user"] == inst.user and body["database"] == "ok"
            assert body["database_user"] == inst.user and body["database_name"] == inst.user
            assert body["site_url"] == inst.url and body["local_mode"] is True


def test_websocket_location_upgrades_through_nginx(host, data, pyinfra_host):
    if host.run("command -v nginx").rc != 0:
        pytest.skip("nginx is not installed (the web roles are not deployed here)")
    for inst in instances(data, pyinfra_host):
        handshake = curl(inst.domain, "/api/v4/websocket", "--http1.1", "-i", "-o", "-",
                         "-H 'Connection: Upgrade'", "-H 'Upgrade: websocket'",
                         "-H 'Sec-WebSocket-Version: 13'",
                         "-H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=='")
        # The server keeps the socket open after 101 (or closes it, the stand-in): read the head.
        answer = host.run(f"{handshake.replace('--max-time 10', '--max-time 3')} | head -1")
        status = answer.stdout.strip()
        if is_standin(host, inst):
            assert status.startswith("HTTP/1.1 101"), answer.stdout + answer.stderr
        else:
            # A real server asks for a login first (401), which still shows the route works.
            assert status.startswith(("HTTP/1.1 101", "HTTP/1.1 401", "HTTP/1.1 400")), status


def test_teams_exist_with_their_admins(host, data, pyinfra_host):
    checked = 0
    for inst in instances(data, pyinfra_host):
        if is_standin(host, inst):
            continue
        code = host.check_output(f"sed -n 's/^WorkingDirectory=//p' {mattermost.dropin_path(inst)}")
        mmctl = (f"runuser -u {inst.user} -- env MMCTL_LOCAL_SOCKET_PATH={mattermost.local_socket(inst)} "
                 f"{code}/bin/mmctl --local")
        teams = {t["name"] for t in json.loads(host.check_output(f"{mmctl} team list --json"))}
        for slug in inst.tenants:
            assert team_name(slug) in teams, slug
            tenant = next(t for t in data.tenants if t.slug == slug)
            members = json.loads(host.check_output(f"{mmctl} user list --all --team {team_name(slug)} --json"))
            emails = {m.get("email", "").lower() for m in members}
            assert {a.email.lower() for a in tenant.admins} <= emails
        # Team admins are made in the database (local mode has no route for team roles):
        # read them back the way the role's own fact does.
        fact = MattermostTeamAdmins()
        admins = fact.process(host.check_output(fact.command(inst.user)).splitlines())
        for slug in inst.tenants:
            tenant = next(t for t in data.tenants if t.slug == slug)
            found = {value.lower() for value in admins.get(team_name(slug), [])}
            missing = [a.email for a in tenant.admins
                       if a.email.lower() not in found and a.username.lower() not in found]
            assert not missing, f"{inst.name}: not team admins of {team_name(slug)}: {missing}"
        checked += 1
    if not checked:
        pytest.skip("every Mattermost instance here is the stand-in: the release was not "
                    "provided, so mmctl and the teams cannot be checked (put it in ARTIFACTS_DIR "
                    "and deploy again)")
