"""roles/coturn without a host: settings, turnserver.conf, openings, the planned operations."""

from __future__ import annotations


import pytest

from roles.coturn import model
from roles.coturn.model import CoturnDataError, CoturnSettings

from fake_facts import FakeHost

SECRET = "s3cr3t-static-auth-secret-value"


def settings(**data) -> CoturnSettings:
    return CoturnSettings.from_data({"turn_domain": "turn.example.org", **data})


def conf_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_turnserver_conf_follows_bbb_external_turn_guidance():
    lines = conf_lines(model.turnserver_conf(settings(), SECRET))
    for expected in ("use-auth-secret", f"static-auth-secret={SECRET}", "realm=turn.example.org",
                     "fingerprint", "no-cli", "listening-port=3478", "tls-listening-port=443",
                     "min-port=32769", "max-port=65535", "cert=/etc/turnserver/fullchain.pem",
                     "pkey=/etc/turnserver/privkey.pem", "no-tlsv1", "no-tlsv1_1", "no-multicast-peers"):
        assert expected in lines
    assert "lt-cred-mech" not in lines  # the shared secret only: no static user accounts


@pytest.mark.parametrize("peer", ["10.0.0.0-10.255.255.255", "172.16.0.0-172.31.255.255",
                                  "192.168.0.0-192.168.255.255", "127.0.0.0-127.255.255.255",
                                  "169.254.0.0-169.254.255.255", "::1",
                                  "fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                                  "fe80::-febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                                  "100.64.0.0-100.127.255.255"])
def test_private_and_special_peers_are_denied(peer):
    assert f"denied-peer-ip={peer}" in conf_lines(model.turnserver_conf(settings(), SECRET))


def test_allowed_peers_come_before_the_denied_ranges():
    text = model.turnserver_conf(settings(turn_allowed_peer_ips=["10.1.2.3"]), SECRET)
    assert text.index("allowed-peer-ip=10.1.2.3") < text.index("denied-peer-ip=10.0.0.0")


def test_a_secret_on_two_lines_is_refused():
    with pytest.raises(CoturnDataError):
        model.turnserver_conf(settings(), "a\nb")


@pytest.mark.parametrize("data, field", [
    ({"turn_domain": None}, "turn_domain"),
    ({"turn_domain": "Turn_1"}, "turn_domain"),
    ({"turn_domain": "turn.example.org", "turn_tls_port": 0}, "turn_tls_port"),
    ({"turn_domain": "turn.example.org", "turn_relay_ports": "100-200"}, "turn_relay_ports"),
    ({"turn_domain": "turn.example.org", "turn_certificate": "letsencrypt"}, "turn_certificate"),
])
def test_bad_host_data_names_the_field(data, field):
    with pytest.raises(CoturnDataError, match=field):
        CoturnSettings.from_data(data)


def test_openings_cover_stun_tls_and_the_relay_range():
    openings = model.coturn_openings(settings())
    assert any(o.covers(3478, "udp") for o in openings)
    assert any(o.covers(3478, "tcp") for o in openings)
    assert any(o.covers(443, "tcp") for o in openings)
    assert any(o.covers(40000, "udp") for o in openings)
    assert any(o.covers(80, "tcp") for o in openings)  # ACME standalone
    assert not any(o.covers(80, "tcp") for o in model.coturn_openings(settings(turn_certificate="self-signed")))


def test_firewall_openings_of_a_turn_host_include_coturn():
    from roles.plan import firewall_openings

    fake = FakeHost("turn-1", {"turn": ["turn-1"]}, {"turn_domain": "turn.example.org"}, {})
    openings = firewall_openings(fake.host.data, groups=fake.host.groups)
    assert any(o.comment == "coturn relay ports" for o in openings)
    assert any(o.comment == "SSH" for o in openings)


class FakeSecrets:
    def __init__(self, values):
        self.values = values

    def get(self, name):
        return self.values[name]


def coturn_plan(cert_exists: bool, **data):
    from roles.coturn import coturn

    fake = FakeHost("turn-1", {"turn": ["turn-1"]},
                    {"turn_domain": "turn.example.org", "turn_certificate": "self-signed", **data},
                    {"DebPackages": {}, "Directory": None, "File": None, "Sha1File": None,
                     "FolderFiles": {}, "PathStats": {},  # a fresh host: nothing there
                     "ChangedSinceStamp": True,  # no reload stamp yet
                     ("File", (("path", model.TURN_CERT),)): {"mode": 640} if cert_exists else None,
                     "SystemdStatus": {}, "SystemdEnabled": {}, "Command": None, "Which": "/usr/bin/x",
                     "AptSources": [], "DebArch": "amd64"})
    return fake.plan(coturn, FakeSecrets({model.SECRET_NAME: SECRET}))


def test_coturn_plan_installs_configures_and_restarts_on_change():
    ops = coturn_plan(cert_exists=False)
    names = [op.name for op in ops]
    assert names[0].endswith("Install coturn and openssl")
    assert any("Render /etc/turnserver.conf" in n for n in names)
    assert any("self-signed certificate" in n for n in names)
    conf = next(op for op in ops if "Render /etc/turnserver.conf" in op.name)
    assert "chmod 640 /etc/turnserver.conf" in conf.commands
    assert "chown root:turnserver /etc/turnserver.conf" in conf.commands
    for op in ops:  # the secret travels in an uploaded file, never in a command
        assert all(SECRET not in c for c in op.commands), op.name


def test_coturn_plan_keeps_an_existing_certificate():
    names = [op.name for op in coturn_plan(cert_exists=True)]
    assert not any("certificate" in n for n in names)
