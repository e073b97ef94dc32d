"""roles/mattermost without any host: instances from data and tenant files, preflight problems
and warnings, needs, rendered files, team steps and the commands they run."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

from assotic.artifacts import Artifact
from assotic.preflight import InventoryView, check_everything, generated_secret_names
from assotic.report import InputError
from assotic.tenants import Tenant, load_tenants
from roles import mattermost
from roles.plan import plan_host
from assotic import mattermost as model
from roles.nginx import render as nginx_render

REPO = Path(__file__).resolve().parents[2]
LOADED = load_tenants(REPO / "group_data" / "tenants")[0]
DECLARED = {"chat": {"host": "web-1", "domain": "chat.example.org", "port": 8065}}
RELEASE = Artifact("mattermost", "11.1.1", "mattermost-team-11.1.1-linux-amd64.tar.gz",
                   "https://releases.mattermost.com/11.1.1/mattermost-team-11.1.1-linux-amd64.tar.gz",
                   "2" * 64)
VIEW = InventoryView("inventory/prod.py", {"web": ["web-1", "web-2"]}, {"web-1": {}, "web-2": {}})


def tenant(slug, members=0, admins=None, **mattermost_app):
    return Tenant.model_validate({
        "slug": slug, "name": f"Association {slug}", "contact": {"email": f"x@{slug}.example.org"},
        "apps": {"mattermost": mattermost_app}, "members": members,
        "admins": admins or [{"name": "Ana Lopez", "email": f"ana@{slug}.example.org"}]})


def built(declared=DECLARED, tenants=LOADED):
    instances, problems = model.build_instances(declared, tenants)
    return instances, problems + model.instance_conflicts(instances, tenants)


# -- instances, from data and tenant files --------------------------------------------------------


def test_the_examples_have_a_shared_instance_and_an_own_one():
    instances, problems = built()
    assert problems == []
    by_name = {i.name: i for i in instances}
    assert by_name["chat"].tenants == ("toitcommun", "zerodechet") and by_name["chat"].declared
    assert by_name["chat"].port == 8065 and by_name["chat"].upstream == "127.0.0.1:8065"
    ulap = by_name["ulap"]
    assert (ulap.host, ulap.domain, ulap.tenants, ulap.declared) == (
        "web-1", "chat.ulap.example.org", ("ulap",), False)
    assert ulap.port == model.own_port("ulap")  # stable: derived from the name only
    assert model.OWN_PORT_BASE <= ulap.port < model.OWN_PORT_BASE + model.OWN_PORT_SPAN


def test_placed_tenants_get_their_instances_host_and_domain():
    instances, _ = built()
    placed = {t.slug: t for t in model.placed_tenants(instances, [t for _, t in LOADED])}
    assert placed["zerodechet"].apps.mattermost.host == "web-1"
    assert placed["zerodechet"].apps.mattermost.domain == "chat.example.org"
    assert "mattermost" in placed["toitcommun"].apps_on("web-1")
    assert placed["ulap"].apps.mattermost.instance == "ulap"


@pytest.mark.parametrize("app, message", [
    ({"instance": "chat", "host": "web-1"}, "not both"),
    ({"host": "web-1"}, "both host and domain"),
    ({}, "instance: <name>"),
    ({"instance": "Chat!"}, "2 to 20 characters"),
])
def test_tenant_mattermost_field_is_instance_or_host_and_domain(tmp_path, app, message):
    data = {"slug": "amap", "name": "AMAP", "contact": {"email": "a@amap.example.org"},
            "apps": {"mattermost": app}, "admins": [{"name": "A", "email": "a@amap.example.org"}]}
    (tmp_path / "amap.yml").write_text(json.dumps(data))
    _, problems = load_tenants(tmp_path)
    assert any(p.field.startswith("apps.mattermost") and message in p.expected for p in problems), problems


def test_unknown_instance_and_bad_declarations_are_named():
    loaded = [("group_data/tenants/amap.yml", tenant("amap", instance="chatt"))]
    _, problems = model.build_instances(DECLARED, loaded)
    assert [(p.file, p.field) for p in problems] == [("group_data/tenants/amap.yml", "apps.mattermost.instance")]
    assert "chat" in problems[0].expected and "'chatt'" in problems[0].expected
    bad = {"Chat": {}, "talk": {"host": "web-9", "domain": "no_domain", "port": 80, "colour": 1},
           "chat": "web-1"}
    fields = {p.field for p in model.declared_instance_problems(bad, ["web-1"], "inventory/prod.py")}
    assert fields == {"mattermost_instances.Chat", "mattermost_instances.talk",
                      "mattermost_instances.talk.host", "mattermost_instances.talk.domain",
                      "mattermost_instances.talk.port", "mattermost_instances.chat"}


def test_ports_domains_and_names_must_not_collide():
    declared = {"chat": DECLARED["chat"],
                "talk": {"host": "web-1", "domain": "chat.example.org", "port": 8065},
                "amap": {"host": "web-1", "domain": "amap-chat.example.org", "port": 8066}}
    loaded = [("amap.yml", tenant("amap", instance="chat"))]
    _, problems = built(declared, loaded)
    messages = " | ".join(p.expected for p in problems)
    assert "8065 is used by instance 'chat'" in messages
    assert "'chat.example.org' is already used" in messages
    assert "no association's slug" in messages  # "amap" is a tenant's slug
    own = [("a.yml", tenant("amap", host="web-1", domain="chat.amap.example.org"))]
    _, problems = built({"amap": {"host": "web-1", "domain": "x.example.org", "port": 8070}}, own)
    assert any("write `instance: amap`" in p.expected for p in problems)


def test_edition_is_checked():
    assert model.edition_problems("team") == [] and model.edition_problems("unlimited") == []
    [problem] = model.edition_problems("enterprise")
    assert problem.field == "mattermost_edition" and "team, unlimited" in problem.expected


def test_team_edition_user_limit_warns_and_never_fails():
    many = [("a.yml", tenant("amap", members=150, instance="chat")),
            ("b.yml", tenant("bio", members=80, instance="chat"))]
    instances, problems = built(DECLARED, many)
    assert problems == []
    tenants = [t for _, t in many]
    [warning] = model.user_count_warnings(instances, tenants, "team")
    assert "230 members" in warning and "near" in warning
    too_many = [tenant("amap", members=200, instance="chat"), tenant("bio", members=80, instance="chat")]
    [warning] = model.user_count_warnings(instances, too_many, "team")
    assert "280 members" in warning and "above" in warning and "unlimited" in warning
    assert model.user_count_warnings(instances, too_many, "unlimited") == []
    assert model.user_count_warnings(*built()[:1], [t for _, t in LOADED], "team") == []


def test_preflight_reports_instance_problems_and_warnings(tmp_path, monkeypatch):
    monkeypatch.setenv("ASSOTIC_SECRETS_FILE", str(tmp_path / "store.json"))
    monkeypatch.setenv("ASSOTIC_SECRETS_KEY", str(tmp_path / "missing.key"))
    with pytest.raises(InputError) as raised:
        check_everything(VIEW, REPO / "group_data" / "tenants", write_secrets=False,
                         mattermost_instances={}, mattermost_edition="team")
    fields = {(Path(p.file).name, p.field) for p in raised.value.problems}
    assert ("zerodechet.yml", "apps.mattermost.instance") in fields
    assert ("toitcommun.yml", "apps.mattermost.instance") in fields


def test_instance_secrets_belong_to_the_instance():
    instances, _ = built()
    names = generated_secret_names([t for _, t in LOADED], instances)
    assert "mattermost/chat/db_password" in names and "mattermost/ulap/db_password" in names
    assert "tenants/zerodechet/mattermost/admin_password" in names
    assert not any(n.startswith("tenants/") and n.endswith("mattermost/db_password") for n in names)
    assert len(names) == len(set(names))


# -- needs and the host plan -------------------------------------------------------------------


def test_needs_are_a_proxy_vhost_and_a_database_for_release_and_standin():
    instances, _ = built()
    chat = instances[0]
    for release in (RELEASE, None):
        needs = mattermost.mattermost_needs(chat, release)
        [vhost] = needs.vhosts
        assert (vhost.kind, vhost.upstream, vhost.domain) == ("proxy", "127.0.0.1:8065", "chat.example.org")
        assert vhost.instance.user == "mattermost_chat"
        assert vhost.instance.home == "/srv/assotic/chat/mattermost"
        [db] = needs.databases
        assert (db.name, db.owner, db.password_secret) == ("mattermost_chat", "mattermost_chat",
                                                           "mattermost/chat/db_password")
        assert needs.pools == [] and needs.redis == [] and needs.timers == []
        nginx_render.check_vhosts(needs.vhosts)


def test_host_plan_has_one_mattermost_plan_per_instance(lab_host_data):
    instances, _ = built()
    lab_host_data.platform.mattermost = instances
    plan = plan_host("web-1", lab_host_data, ["web"], "12")
    needs = plan.needs
    chat_plans = [p for p in plan.apps if p.app == "mattermost"]
    assert [(p.instance.name, p.tenant, p.release) for p in chat_plans] == [("chat", None, None),
                                                                           ("ulap", None, None)]
    assert all(p.subject is p.instance for p in chat_plans)
    assert {v.domain for v in needs.vhosts} >= {"chat.example.org", "chat.ulap.example.org"}
    assert not [p for p in plan_host("web-2", lab_host_data, ["web"], "12").apps if p.app == "mattermost"]


def test_proxy_vhost_has_mattermosts_websocket_location():
    instances, _ = built()
    vhost = mattermost.mattermost_needs(instances[0], None).vhosts[0]
    from roles.tls import model as tls_model

    settings = nginx_render.NginxSettings.from_data({})
    cert = tls_model.cert_paths(vhost.domain, tls_model.TlsSettings())
    text = nginx_render.vhost_config(vhost, cert, settings)
    assert "proxy_pass http://127.0.0.1:8065;" in text
    assert "location ~ /api/v[0-9]+/(users/)?websocket$ {" in text
    assert 'proxy_set_header Connection "upgrade";' in text


# -- rendered files ------------------------------------------------------------------------------


def test_env_file_holds_every_setting_and_keeps_paths_in_the_home():
    instances, _ = built()
    chat = instances[0]
    text = mattermost.env_file(chat, "p@ss/w:rd", {})
    lines = dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert lines["MM_SQLSETTINGS_DATASOURCE"] == (
        "postgres://mattermost_chat:p%40ss%2Fw%3Ard@127.0.0.1:5432/mattermost_chat"
        "?sslmode=disable&connect_timeout=10")
    assert lines["MM_SERVICESETTINGS_LISTENADDRESS"] == "127.0.0.1:8065"
    assert lines["MM_SERVICESETTINGS_SITEURL"] == "https://chat.example.org"
    assert lines["MM_SERVICESETTINGS_ENABLELOCALMODE"] == "true"
    assert lines["MM_SERVICESETTINGS_LOCALMODESOCKETLOCATION"] == "/run/assotic-mattermost-chat/mattermost.sock"
    assert lines["MM_CONFIG"] == "/srv/assotic/chat/mattermost/config/config.json"
    assert lines["MM_TEAMSETTINGS_ENABLEOPENSERVER"] == "false"
    for name, value in lines.items():
        if name.endswith(("DIRECTORY", "FILELOCATION")):
            assert value.startswith("/srv/assotic/chat/mattermost/"), name
    assert text == mattermost.env_file(chat, "p@ss/w:rd", {})  # stable: idempotent deploys
    with pytest.raises(ValueError, match="max_users_per_team"):
        mattermost.env_file(chat, "pw", {"mattermost_max_users_per_team": "many"})
    with pytest.raises(ValueError, match="quotes"):
        mattermost.env_file(chat, "pw", {"mattermost_max_users_per_team": 10}) and \
            mattermost.environment(model.MattermostInstance("x'y", "web-1", "a.example.org", 1, (), True), "p")


def test_mail_goes_to_the_hosts_postfix_as_the_association_or_as_the_shared_instance():
    own = tenant("amap", host="web-1", domain="chat.amap.example.org")
    shared = tenant("velo", instance="chat")
    instances, problems = built(tenants=[("amap.yml", own), ("velo.yml", shared)])
    assert problems == []
    by_name = {i.name: i for i in instances}

    def mail_lines(inst):
        text = mattermost.env_file(inst, "pw", {}, inst.mail_sender([own, shared]))
        return {k: v for k, v in (line.split("=", 1) for line in text.splitlines()
                                  if line.startswith("MM_EMAILSETTINGS_"))}

    amap = mail_lines(by_name["amap"])
    assert amap["MM_EMAILSETTINGS_SMTPSERVER"] == "127.0.0.1" and amap["MM_EMAILSETTINGS_SMTPPORT"] == "25"
    assert amap["MM_EMAILSETTINGS_SENDEMAILNOTIFICATIONS"] == "true"
    assert amap["MM_EMAILSETTINGS_ENABLESMTPAUTH"] == "false"
    assert amap["MM_EMAILSETTINGS_FEEDBACKEMAIL"] == "no-reply@chat.amap.example.org"
    assert amap["MM_EMAILSETTINGS_REPLYTOADDRESS"] == "x@amap.example.org"
    chat = mail_lines(by_name["chat"])
    assert chat["MM_EMAILSETTINGS_FEEDBACKEMAIL"] == "no-reply@chat.example.org"
    assert chat["MM_EMAILSETTINGS_REPLYTOADDRESS"] == ""


def test_unit_runs_as_the_instances_user_with_its_env_file():
    unit = mattermost.unit_template()
    for line in ("Type=notify", "User=mattermost_%i", "Group=mattermost_%i",
                 "EnvironmentFile=/etc/assotic/mattermost/%i.env",
                 "RuntimeDirectory=assotic-mattermost-%i", "RuntimeDirectoryMode=0700",
                 "ReadWritePaths=/srv/assotic/%i/mattermost", "ProtectSystem=strict", "UMask=0027"):
        assert f"\n{line}\n" in unit, line
    assert "ExecStart" not in unit  # in the per-instance drop-in


def test_release_dropin_runs_the_release_or_the_standin():
    instances, _ = built()
    real = mattermost.release_dropin(instances[0], RELEASE)
    assert "ExecStart=/opt/assotic/mattermost-11.1.1/bin/mattermost\n" in real
    assert "WorkingDirectory=/opt/assotic/mattermost-11.1.1\n" in real and "STAND-IN" not in real
    standin = mattermost.release_dropin(instances[0], None)
    assert f"ExecStart=/usr/bin/python3 {mattermost.STANDIN_FILE}\n" in standin and "STAND-IN" in standin


def test_standin_code_compiles_and_says_what_it_is():
    code = mattermost.standin_code()
    compile(code, "mattermost-standin.py", "exec")
    assert mattermost.STANDIN_BANNER in code and '"standin": True' in code


FAKE_PSYCOPG2 = (
    "class _C:\n    def __enter__(self): return self\n    def __exit__(self, *a): pass\n"
    "    def execute(self, q): pass\n    def fetchone(self): return ('mattermost_t', 'mattermost_t')\n"
    "class _K:\n    def cursor(self): return _C()\n    def close(self): pass\n"
    "def connect(dsn, connect_timeout): return _K()\n")


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running_standin(tmp_path, env: dict[str, str]):
    """The stand-in as a real process (system python3) with `env` over its listen address and
    local-mode socket, against a fake psycopg2 (no PostgreSQL here). Yields (port, socket)."""
    if shutil.which("python3") is None:
        pytest.skip("no python3")
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "psycopg2.py").write_text(FAKE_PSYCOPG2)
    script = tmp_path / "standin.py"
    script.write_text(mattermost.standin_code())
    port, sock = free_port(), tmp_path / "mm.sock"
    env = {**env, "PYTHONPATH": str(fake), "PATH": "/usr/bin:/bin",
           "MM_SQLSETTINGS_DATASOURCE": "postgres://u:p@127.0.0.1/db",
           "MM_SERVICESETTINGS_LISTENADDRESS": f"127.0.0.1:{port}",
           "MM_SERVICESETTINGS_ENABLELOCALMODE": "true",
           "MM_SERVICESETTINGS_LOCALMODESOCKETLOCATION": str(sock)}
    process = subprocess.Popen(["python3", str(script)], env=env, stderr=subprocess.PIPE)
    try:
        for _ in range(50):
            if sock.exists() or process.poll() is not None:
                break
            time.sleep(0.1)
        assert sock.exists(), process.stderr.read().decode() if process.poll() is not None else "no socket"
        yield port, sock
    finally:
        process.terminate()
        process.wait(timeout=10)


def local_request(sock: Path, method: str, path: str, body: bytes = b"") -> tuple[int, dict]:
    """One request on the local-mode socket, as `curl --unix-socket` sends it: (status, JSON)."""
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(30)
        client.connect(str(sock))
        client.sendall(f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                       f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                       + body)
        reply = b""
        while chunk := client.recv(65536):
            reply += chunk
    head, _, payload = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload)


def test_standin_answers_ping_over_http_and_local_socket(tmp_path):
    with running_standin(tmp_path, {"ASSOTIC_MATTERMOST_INSTANCE": "t"}) as (port, sock):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v4/system/ping", timeout=5) as r:
            body = json.load(r)
        assert body["status"] == "OK" and body["standin"] is True and body["instance"] == "t"
        assert body["database"] == "ok" and body["database_user"] == "mattermost_t"
        assert oct(sock.stat().st_mode & 0o777) == "0o600"
        status, body = local_request(sock, "GET", "/api/v4/system/ping")
        assert status == 200 and body["standin"] is True


def ulap_instance_env(smtp_port: int, **extra: str) -> dict[str, str]:
    """The environment roles/mattermost writes for ulap's own instance (it sends as ulap, with a
    Reply-To), its SMTP port moved to a loopback test listener."""
    instances, _ = built()
    inst = next(i for i in instances if i.name == "ulap")
    env = dict(mattermost.environment(inst, "db-pw", None, inst.mail_sender([ulap()])))
    return {**env, "MM_EMAILSETTINGS_SMTPPORT": str(smtp_port), **extra}


def test_standin_sends_the_test_mail_of_its_email_settings_on_the_local_socket_only(tmp_path):
    """POST /api/v4/email/test, Mattermost's route: one mail through MM_EMAILSETTINGS_*, From
    the instance's sender; on the local-mode socket only (through nginx it would be anyone's)."""
    from test_backup import smtp_listener

    smtp_port, thread, received = smtp_listener()
    env = ulap_instance_env(smtp_port)
    assert env["MM_EMAILSETTINGS_SMTPSERVER"] == "127.0.0.1"
    with running_standin(tmp_path, env) as (port, sock):
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v4/email/test", method="POST",
                                         data=json.dumps({"to": "intruder@example.net"}).encode())
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 404
        status, body = local_request(sock, "POST", "/api/v4/email/test",
                                     json.dumps({"to": "test@lab.example.org"}).encode())
    thread.join(timeout=30)
    assert (status, body["status"], body["standin"]) == (200, "OK", True), body
    assert body["smtp_reply"] == "250 queued"  # the listener's answer to the message
    # The listener takes one connection: the mail is the socket's, the HTTP request sent none.
    assert received["from"] == "<no-reply@cloud.ulap.example.org>" == f"<{env['MM_EMAILSETTINGS_FEEDBACKEMAIL']}>"
    assert received["to"] == "<test@lab.example.org>"
    headers = received["body"].split("\n\n")[0].splitlines()
    assert "From: no-reply@cloud.ulap.example.org" in headers
    assert "Reply-To: bureau@ulap.example.org" in headers
    assert "To: test@lab.example.org" in headers
    assert "Subject: assotic stand-in of Mattermost instance ulap: test mail" in headers


@pytest.mark.parametrize("smtp, expected", [
    ("closed", "ConnectionRefusedError"),
    ("silent", "timed out"),  # accepts the connection, never greets: the timeout ends it
])
def test_standin_answers_an_smtp_failure_with_500_and_its_reason_not_a_hang(tmp_path, smtp, expected):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    if smtp == "silent":
        silent.listen(1)  # the kernel completes the handshake; nobody ever answers
    smtp_port = silent.getsockname()[1]
    if smtp == "closed":
        silent.close()
    env = ulap_instance_env(smtp_port, MM_EMAILSETTINGS_SMTPSERVERTIMEOUT="1")
    try:
        with running_standin(tmp_path, env) as (_, sock):
            started = time.monotonic()
            status, body = local_request(sock, "POST", "/api/v4/email/test", b'{"to": "test@lab.example.org"}')
            elapsed = time.monotonic() - started
            bad_status, bad_body = local_request(sock, "POST", "/api/v4/email/test", b'{"email": "x"}')
    finally:
        silent.close()
    assert status == 500 and body["id"] == "app.admin.test_email.failure", body
    assert expected in body["message"] and body["standin"] is True
    assert elapsed < 5
    assert bad_status == 400 and "to" in bad_body["message"]


# -- teams and admins ----------------------------------------------------------------------------


def ulap():
    return next(t for _, t in LOADED if t.slug == "ulap")


def test_team_steps_on_an_empty_server_then_none():
    instances, _ = built()
    inst = next(i for i in instances if i.name == "ulap")
    steps = mattermost.team_steps(inst, [ulap()], [], [], {}, {})
    assert [(s.kind, s.team, s.username, s.first_admin) for s in steps] == [
        ("create_team", "ulap", "", False),
        ("create_user", "ulap", "nadia_benali", True), ("add_member", "ulap", "nadia_benali", False),
        ("make_team_admin", "ulap", "nadia_benali", False),
        ("create_user", "ulap", "jpmorel", False), ("add_member", "ulap", "jpmorel", False),
        ("make_team_admin", "ulap", "jpmorel", False)]
    users = [{"username": "nadia_benali", "email": "Nadia.Benali@ulap.example.org"},
             {"username": "jpm", "email": "jp.morel@ulap.example.org"}]
    admins = {"ulap": ["nadia_benali", "nadia.benali@ulap.example.org", "jpm", "jp.morel@ulap.example.org"]}
    assert mattermost.team_steps(inst, [ulap()], [{"name": "ulap"}], users, {"ulap": users}, admins) == []


def test_declared_admins_are_made_team_admins_on_every_deploy():
    """The tenant file says who the association's admins are: a deploy after a failed
    promotion, or with an admin already in the team as a plain member, still promotes them."""
    instances, _ = built()
    inst = next(i for i in instances if i.name == "ulap")
    steps = mattermost.team_steps(inst, [ulap()], [], [], {}, {})
    assert [(s.kind, s.username) for s in steps if s.kind in ("add_member", "make_team_admin")] == [
        ("add_member", "nadia_benali"), ("make_team_admin", "nadia_benali"),
        ("add_member", "jpmorel"), ("make_team_admin", "jpmorel")]
    # Both are members; the first is admin, the second is not (demoted, or a promotion that
    # failed): only the second is promoted, under the username the account really has.
    users = [{"username": "nadia_benali", "email": "nadia.benali@ulap.example.org"},
             {"username": "jpm", "email": "JP.Morel@ulap.example.org"}]
    steps = mattermost.team_steps(inst, [ulap()], [{"name": "ulap"}], users, {"ulap": users},
                                  {"ulap": ["nadia_benali", "nadia.benali@ulap.example.org"]})
    assert [(s.kind, s.team, s.username) for s in steps] == [("make_team_admin", "ulap", "jpm")]


def test_team_admin_is_made_in_the_database_because_local_mode_has_no_route_for_it():
    """mattermost/mattermost server/channels/api4/team_local.go mounts no schemeRoles (nor any
    team-member role) route on the local socket: that PUT would answer 404 and curl exit 22."""
    instances, _ = built()
    inst = instances[0]
    add = mattermost.step_commands(inst, RELEASE, mattermost.TeamStep(
        "add_member", "zerodechet", "lucie", "lucie@zerodechet.example.org"))
    assert add == ["runuser -u mattermost_chat -- sh -c 'umask 0027 && unset TMPDIR && exec \"$@\"' sh env MMCTL_LOCAL_SOCKET_PATH=/run/assotic-mattermost-chat/"
                   "mattermost.sock /opt/assotic/mattermost-11.1.1/bin/mmctl --local team users add "
                   "zerodechet lucie"]
    [promote] = mattermost.step_commands(inst, RELEASE, mattermost.TeamStep(
        "make_team_admin", "zerodechet", "lucie", "lucie@zerodechet.example.org"))
    assert "schemeRoles" not in promote and "curl" not in promote
    assert promote.startswith("test -n \"$(runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 "
                              "-d mattermost_chat -c ")
    assert ("UPDATE teammembers SET schemeadmin = true WHERE deleteat = 0 AND teamid = "
            "(SELECT id FROM teams WHERE name = '\"'\"'zerodechet'\"'\"' AND deleteat = 0) AND userid = "
            "(SELECT id FROM users WHERE username = '\"'\"'lucie'\"'\"') RETURNING userid") in promote
    assert promote.endswith("|| { echo 'assotic: lucie is not a member of team zerodechet' >&2; exit 1; }")
    quoted = mattermost.step_commands(inst, RELEASE, mattermost.TeamStep(
        "make_team_admin", "zerodechet", "o'neil", "o@zerodechet.example.org"))[0]
    assert "username = '\"'\"'o'\"'\"''\"'\"'neil'\"'\"'" in quoted  # a quote doubled, then shell-quoted


def test_team_admins_fact_reads_the_database_or_nothing():
    from roles.mattermost.facts import MattermostTeamAdmins

    fact = MattermostTeamAdmins()
    command = fact.command("mattermost_chat")
    assert command.startswith("runuser -u postgres -- psql -XAtq -F '|' -d mattermost_chat -c ")
    assert "tm.schemeadmin" in command and command.endswith("2>/dev/null || true")
    assert fact.process(["zerodechet|lucie|lucie@zerodechet.example.org",
                         "zerodechet|marc|marc@zerodechet.example.org", "toitcommun|ana|ana@t.example.org"]) == {
        "zerodechet": ["lucie", "lucie@zerodechet.example.org", "marc", "marc@zerodechet.example.org"],
        "toitcommun": ["ana", "ana@t.example.org"]}
    assert fact.process([]) == {} and fact.process(["ERROR: relation does not exist"]) == {}


def test_team_names_replace_underscores():
    assert model.team_name("zero_dechet") == "zero-dechet"


def test_commands_never_put_a_password_on_the_command_line():
    instances, _ = built()
    inst = instances[0]
    step = mattermost.TeamStep("create_user", "zerodechet", "lucie", "lucie@zerodechet.example.org",
                               "Lucie Perrin", first_admin=False)
    body = mattermost.new_user_json(step, "S3CRET-PASSWORD")
    assert json.loads(body)["password"] == "S3CRET-PASSWORD"
    commands = mattermost.step_commands(inst, RELEASE, step, "/srv/assotic/chat/mattermost/tmp/u.json")
    text = "\n".join(commands)
    assert "S3CRET" not in text and "--password" not in text
    assert "--data-binary @/srv/assotic/chat/mattermost/tmp/u.json" in text and "rm -f" in text
    assert "runuser -u mattermost_chat --" in text and "--unix-socket /run/assotic-mattermost-chat/mattermost.sock" in text
    assert "/users/password/reset/send" in text  # not the first admin: a reset e-mail
    team = mattermost.step_commands(inst, RELEASE, mattermost.TeamStep("create_team", "zerodechet",
                                                                       display_name="Zéro Déchet"))
    assert team == ["runuser -u mattermost_chat -- sh -c 'umask 0027 && unset TMPDIR && exec \"$@\"' sh "
                    "env MMCTL_LOCAL_SOCKET_PATH=/run/assotic-mattermost-chat/"
                    "mattermost.sock /opt/assotic/mattermost-11.1.1/bin/mmctl --local team create --private "
                    "--name zerodechet --display-name 'Zéro Déchet'"]
    add = "\n".join(mattermost.step_commands(inst, RELEASE, mattermost.TeamStep(
        "add_member", "zerodechet", "lucie", "lucie@zerodechet.example.org")))
    assert "mmctl --local team users add zerodechet lucie" in add


def test_mmctl_facts_parse_json_or_nothing():
    from roles.mattermost.facts import MmctlJson

    fact = MmctlJson()
    assert fact.process(['[{"name": "ulap"}]']) == [{"name": "ulap"}]
    assert fact.process(["Error: socket not found"]) == []
    assert fact.process([]) == []
    assert "--json 2>/dev/null || true" in fact.command("mmctl --local", "team list")


def test_platform_lists_instances_per_host():
    from assotic.preflight import Platform

    instances, _ = built()
    platform = Platform(tenants=[], secrets=None, mattermost=instances)
    assert [i.name for i in platform.mattermost_on("web-1")] == ["chat", "ulap"]
    assert platform.mattermost_on("web-2") == []


def test_check_cli_prints_warnings_apart(monkeypatch, capsys, tmp_path):
    from commands import check as check_cli
    from commands.__main__ import main

    instances, _ = built()
    platform = SimpleNamespace(tenants=[], mattermost=instances, new_secrets=[],
                               warnings=["Mattermost instance 'chat': near the limit"])
    host = SimpleNamespace(name="web-1", data=SimpleNamespace(platform=platform))
    monkeypatch.setattr(check_cli, "load_inventory_like_pyinfra", lambda path: [host])
    inventory = tmp_path / "inv.py"
    inventory.write_text("")
    assert main(["check", "--inventory", str(inventory)]) == 0
    out = capsys.readouterr().out
    assert "mattermost instance chat: chat.example.org on web-1, 127.0.0.1:8065" in out
    assert "1 warning(s):\n  ! Mattermost instance 'chat': near the limit" in out
