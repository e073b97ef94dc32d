"""roles/mail planned against one FakeHost (nothing connects): a first deploy installs and
writes everything in order, and a host that already has it all changes nothing."""

from __future__ import annotations

import hashlib

from fake_facts import FakeHost
from test_mail import PASSWORDS, settings
from test_mattermost_plan import changing

from roles import mail

FRESH = {"DebPackages": {}, "FolderFiles": {}, "ChangedSinceStamp": True, "SystemdStatus": {},
         "File": None, "Directory": None, "Sha1File": None,
         "SystemdEnabled": {}, "PostfixServiceEntry": ""}


class Secrets:
    def get(self, name: str) -> str:
        return PASSWORDS[name]


def plan(facts):
    fake = FakeHost("web-1", {"web": ["web-1"]}, {}, facts)
    return fake.plan(mail.mail, settings(), Secrets())


def test_a_first_deploy_installs_postfix_then_its_files_then_builds_the_maps_and_reloads():
    names = [op.name for op in plan(FRESH)]
    prefix = "Mail: Postfix null client | "
    assert [n.removeprefix(prefix) for n in names] == [
        "Preseed Postfix: no configuration of its own",
        "Install Postfix (null client)",
        f"Render {mail.MAIN_CF}",
        "Declare the assotic-smtps service in /etc/postfix/master.cf (postconf -M)",
        f"Render {mail.PASSWORD_MAP}",
        "Render /etc/postfix/assotic-sender-transport",
        "Render /etc/postfix/assotic-admin",
        "Render /etc/postfix/assotic-sender-canonical",
        "Build the Postfix maps",
        "Enable and start postfix.service",
        "Reload Postfix",
    ]


def test_the_relay_passwords_are_in_no_command_of_the_plan():
    commands = " ".join(" ".join(map(str, op.commands)) for op in plan(FRESH))
    assert all(password not in commands for password in PASSWORDS.values())


def test_a_host_that_has_it_all_changes_nothing():
    s = settings()
    files = {mail.MAIN_CF: mail.main_cf(s),
             mail.PASSWORD_MAP: mail.password_map_text(s.plan, PASSWORDS.__getitem__),
             mail.SENDER_TRANSPORT_MAP: mail.sender_transport_text(s.plan),
             mail.ADMIN_MAP: mail.admin_map_text(s),
             mail.SENDER_CANONICAL_MAP: mail.sender_canonical_text(s)}
    modes = {mail.PASSWORD_MAP: 0o600}
    folder = {path: (hashlib.sha1(text.encode()).hexdigest(), "root", "root", modes.get(path, 0o644))
              for path, text in files.items()}
    done = {**FRESH, "DebPackages": {p: ["1"] for p in mail.PACKAGES + ["postfix"]},
            "FolderFiles": folder, "ChangedSinceStamp": False,
            "SystemdStatus": {"postfix.service": True}, "SystemdEnabled": {"postfix.service": True},
            "PostfixServiceEntry": mail.implicit_service_line()}
    assert [op.name for op in changing(plan(done))] == []
