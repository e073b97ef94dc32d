"""Outgoing mail: the data checks (assotic/mail.py) and the null client's files (roles/mail),
read back by the real Postfix tools (postconf, postmap) where they are installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from assotic.layout import MAIL_RELAY_SECRET, tenant_mail_relay_secret
from assotic.mail import (admin_address_problems, mail_plan, mail_secret_problems, parse_relay,
                          relay_lookup_problems, relay_problems)
from assotic.tenants import Tenant
from roles.mail import (
    MailSettings,
    settings_from,
    admin_map_text,
    main_cf,
    implicit_service_commands,
    implicit_service_line,
    password_map_text,
    sender_canonical_text,
    sender_transport_text,
)

PLATFORM_RELAY = {"host": "smtp.hosting.example.net", "port": 587, "tls": "starttls",
                  "login": "serveurs@hosting.example.net"}
OWN_RELAY = {"host": "mail.provider.example", "port": 465, "tls": "implicit", "login": "ulap"}
PASSWORDS = {MAIL_RELAY_SECRET: "platform-pw", tenant_mail_relay_secret("ulap"): "ulap-pw"}

needs_postfix = pytest.mark.skipif(shutil.which("postconf") is None,
                                   reason="Postfix's postconf is not installed here (.ci/run installs it)")


def tenant(slug: str, mail: dict | None = None) -> Tenant:
    return Tenant.model_validate({
        "slug": slug, "name": slug, "contact": {"email": f"bureau@{slug}.example.org"},
        "apps": {"nextcloud": {"host": "web-1", "domain": f"cloud.{slug}.example.org"}},
        "admins": [{"name": "A", "email": f"a@{slug}.example.org"}], **({"mail": mail} if mail else {})})


class FakeStore:
    def __init__(self, names):
        self._names = list(names)

    def names(self):
        return self._names


def test_the_sender_defaults_to_no_reply_on_the_associations_first_domain_and_replies_to_its_contact():
    t = tenant("zerodechet")
    assert t.mail_from == "no-reply@cloud.zerodechet.example.org"
    assert t.mail_reply_to == "bureau@zerodechet.example.org"
    chosen = tenant("ulap", {"from": "contact@ulap.example.org", "reply_to": "bureau@ulap.example.org"})
    assert (chosen.mail_from, chosen.mail_reply_to) == ("contact@ulap.example.org", "bureau@ulap.example.org")


def test_every_problem_of_a_relay_is_named_at_once():
    problems = relay_problems("group_data/all.py", "mail_relay",
                              {"host": "SMTP", "port": 0, "tls": "none", "login": "a b", "password": "x"})
    fields = sorted(p.field for p in problems)
    assert fields == ["mail_relay.host", "mail_relay.login", "mail_relay.password",
                      "mail_relay.port", "mail_relay.tls"]
    password = next(p for p in problems if p.field == "mail_relay.password")
    assert MAIL_RELAY_SECRET in password.expected and "x" not in password.expected.split("got")[-1:]


def test_a_relay_that_is_not_a_mapping_and_a_bad_admin_address_are_refused():
    assert relay_problems("all.py", "mail_relay", "smtp.example.net")[0].field == "mail_relay"
    assert relay_problems("all.py", "mail_relay", None) == []
    assert admin_address_problems("all.py", "mail_admin", "root") != []
    assert admin_address_problems("all.py", "mail_admin", "hosting@example.org") == []


def test_a_relay_without_a_password_in_the_store_is_named_with_the_command_that_sets_it():
    plan = mail_plan(parse_relay(PLATFORM_RELAY), [tenant("ulap", {"relay": OWN_RELAY})], None)
    problems = mail_secret_problems("the secrets store", plan, FakeStore([MAIL_RELAY_SECRET]))
    assert [p.field for p in problems] == [tenant_mail_relay_secret("ulap")]
    assert f"make secret-set NAME={tenant_mail_relay_secret('ulap')}" in problems[0].expected


def settings(with_own_relay: bool = True, platform: bool = True) -> MailSettings:
    tenants = [tenant("ulap", {"relay": OWN_RELAY} if with_own_relay else None), tenant("zerodechet")]
    plan = mail_plan(parse_relay(PLATFORM_RELAY) if platform else None, tenants, "hosting@example.net")
    return MailSettings(hostname="web-1.hosting.example.net", plan=plan)


def test_the_password_map_keys_an_associations_relay_by_its_sender_and_the_platforms_by_host_and_port():
    text = password_map_text(settings().plan, PASSWORDS.__getitem__)
    assert "no-reply@cloud.ulap.example.org ulap:ulap-pw" in text.splitlines()
    assert "[smtp.hosting.example.net]:587 serveurs@hosting.example.net:platform-pw" in text.splitlines()
    assert "zerodechet" not in text  # it has no relay of its own


def test_an_associations_relay_with_implicit_tls_takes_the_smtps_transport():
    assert sender_transport_text(settings().plan).splitlines()[1:] == [
        "no-reply@cloud.ulap.example.org assotic-smtps:[mail.provider.example]:465"]


def test_without_a_platform_relay_mail_is_kept_in_the_queue():
    text = main_cf(settings(platform=False))
    assert "defer_transports = smtp" in text
    assert "default_transport = smtp:[smtp.hosting.example.net]:587" in main_cf(settings())


@needs_postfix
def test_postfix_reads_every_parameter_of_the_rendered_main_cf(tmp_path):
    """postconf warns about every parameter name it does not know: a typo is caught here."""
    (tmp_path / "main.cf").write_text(main_cf(settings()))
    # Debian's master.cf with the block the deploy adds (files.block).
    shutil.copy("/etc/postfix/master.cf", tmp_path / "master.cf")
    for command in implicit_service_commands(str(tmp_path)):
        subprocess.run(command, shell=True, check=True)
    result = subprocess.run(["postconf", "-c", str(tmp_path), "-n"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr, result.stderr
    values = {name: value.strip() for name, _, value in
              (line.partition(" =") for line in result.stdout.splitlines())}
    assert values["inet_interfaces"] == "loopback-only"
    assert values["mydestination"] == ""
    assert values["smtp_tls_security_level"] == "secure"
    assert values["default_transport"] == "smtp:[smtp.hosting.example.net]:587"
    services = subprocess.run(["postconf", "-c", str(tmp_path), "-M", "assotic-smtps/unix"],
                              capture_output=True, text=True).stdout
    assert "smtp_tls_wrappermode=yes" in services


def test_how_the_relay_is_looked_up_is_postfixs_default_unless_data_says_native():
    assert "\nsmtp_host_lookup = dns\n" in main_cf(settings())
    plan = settings().plan
    native = settings_from("web-1", type("Data", (), {"mail_relay_lookup": "native"})(), plan)
    assert "\nsmtp_host_lookup = native\n" in main_cf(native)
    with pytest.raises(ValueError, match="mail_relay_lookup"):
        settings_from("web-1", type("Data", (), {"mail_relay_lookup": "hosts"})(), plan)
    assert relay_lookup_problems("inventory/x.py", "web-1.mail_relay_lookup", "native") == []
    [problem] = relay_lookup_problems("inventory/x.py", "web-1.mail_relay_lookup", "hosts")
    assert problem.field == "web-1.mail_relay_lookup" and "'native'" in problem.expected


@needs_postfix
def test_the_smtps_service_is_written_once_whatever_the_number_of_deploys(tmp_path):
    """postconf -M edits Debian's master.cf: run twice, one entry, as the deploy's fact reads it."""
    shutil.copy("/etc/postfix/master.cf", tmp_path / "master.cf")
    (tmp_path / "main.cf").write_text(main_cf(settings()))
    for _ in range(2):
        for command in implicit_service_commands(str(tmp_path)):
            subprocess.run(command, shell=True, check=True)
    shown = subprocess.run(["postconf", "-c", str(tmp_path), "-Mf", "assotic-smtps/unix"],
                           capture_output=True, text=True, check=True).stdout
    assert " ".join(shown.split()) == implicit_service_line()
    assert (tmp_path / "master.cf").read_text().count("assotic-smtps") == 1


@needs_postfix
def test_postconf_does_warn_about_a_misspelt_parameter(tmp_path):
    """The check above can fail: one wrong name is reported."""
    (tmp_path / "main.cf").write_text(main_cf(settings()) + "smtp_tls_securty_level = secure\n")
    (tmp_path / "master.cf").write_text(Path("/etc/postfix/master.cf").read_text())
    result = subprocess.run(["postconf", "-c", str(tmp_path), "-n"], capture_output=True, text=True)
    assert "smtp_tls_securty_level" in result.stderr


@needs_postfix
def test_postmap_finds_each_senders_login_and_the_host_mail_rewrites(tmp_path):
    s = settings()
    files = {"sasl_passwd": password_map_text(s.plan, PASSWORDS.__getitem__),
             "transport": sender_transport_text(s.plan),
             "admin": admin_map_text(s), "canonical": sender_canonical_text(s)}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        subprocess.run(["postmap", f"hash:{tmp_path / name}"], check=True)

    def query(key: str, name: str) -> str:
        return subprocess.run(["postmap", "-q", key, f"hash:{tmp_path / name}"],
                              capture_output=True, text=True).stdout.strip()

    assert query("no-reply@cloud.ulap.example.org", "sasl_passwd") == "ulap:ulap-pw"
    assert query("[smtp.hosting.example.net]:587", "sasl_passwd") == "serveurs@hosting.example.net:platform-pw"
    assert query("no-reply@cloud.zerodechet.example.org", "transport") == ""
    assert query("@web-1.hosting.example.net", "admin") == "hosting@example.net"
    assert query("@web-1.hosting.example.net", "canonical") == "hosting@example.net"


def test_verify_names_old_mail_and_mail_the_relay_refused_for_good():
    from roles.mail import stuck_mail

    now = 1_800_000_000
    queue = "\n".join([
        '{"queue_name": "deferred", "queue_id": "4AB12", "arrival_time": %d, "sender": '
        '"no-reply@cloud.ulap.example.org", "recipients": [{"address": "a@b.org", "delay_reason": '
        '"SASL authentication failed; server relay[10.0.0.5] said: 535 5.7.8 Error: authentication failed"}]}' % (now - 30),
        '{"queue_name": "deferred", "queue_id": "5CD34", "arrival_time": %d, "sender": "root@web-1", '
        '"recipients": [{"address": "equipe@x.org", "delay_reason": "connect to relay[10.0.0.5]:587: '
        'Connection refused"}]}' % (now - 120),
        '{"queue_name": "deferred", "queue_id": "6EF56", "arrival_time": %d, "sender": "root@web-1", '
        '"recipients": [{"address": "equipe@x.org", "delay_reason": "connect to relay: Connection refused"}]}'
        % (now - 7200),
    ])
    found = stuck_mail(queue, now, max_age_s=3600)
    assert len(found) == 2  # a two-minute outage is only a delay
    assert found[0].startswith("4AB12 from no-reply@cloud.ulap.example.org to a@b.org")
    assert "535 5.7.8" in found[0]
    assert found[1].startswith("6EF56") and "waiting 120 min" in found[1]
    assert stuck_mail("", now, 3600) == []
