"""`make dns`: the records of each association, from data only (assotic/dns.py)."""

from __future__ import annotations

from assotic.dns import association_records, zone_text
from assotic.mail import parse_relay
from assotic.preflight import host_data_problems
from assotic.tenants import Tenant
from roles.tls.model import caa_issuer

RELAY = parse_relay({"host": "smtp.hosting.example.net", "login": "x", "spf": "include:spf.hosting.example.net"})
ADDRESSES = {"web-1": ("203.0.113.10", "2001:db8::10"), "web-2": ("203.0.113.20", None)}


def tenant(mail=None) -> Tenant:
    return Tenant.model_validate({
        "slug": "ulap", "name": "ULAP", "contact": {"email": "bureau@ulap.example.org"},
        "apps": {"nextcloud": {"host": "web-1", "domain": "cloud.ulap.example.org"},
                 "paheko": {"host": "web-2", "domain": "gestion.ulap.example.org"}},
        "admins": [{"name": "A", "email": "a@ulap.example.org"}], **({"mail": mail} if mail else {})})


def lines(records):
    return [r.zone_line() for r in records]


def test_every_domain_points_at_its_hosts_addresses_with_the_cas_caa():
    records, missing = association_records(tenant(), ADDRESSES, "letsencrypt.org", RELAY)
    assert missing == []
    assert lines(records)[:5] == [
        "cloud.ulap.example.org. 3600 IN A 203.0.113.10",
        "cloud.ulap.example.org. 3600 IN AAAA 2001:db8::10",
        'cloud.ulap.example.org. 3600 IN CAA 0 issue "letsencrypt.org"',
        "gestion.ulap.example.org. 3600 IN A 203.0.113.20",
        'gestion.ulap.example.org. 3600 IN CAA 0 issue "letsencrypt.org"',
    ]


def test_spf_and_dmarc_go_on_the_senders_domain_for_the_relay_that_sends_it():
    own = {"from": "contact@ulap.example.org",
           "relay": {"host": "mail.provider.example", "port": 465, "tls": "implicit", "login": "u",
                     "spf": "include:_spf.provider.example"}}
    records, _ = association_records(tenant(own), ADDRESSES, None, RELAY)
    assert 'ulap.example.org. 3600 IN TXT "v=spf1 include:_spf.provider.example -all"' in lines(records)
    assert ('_dmarc.ulap.example.org. 3600 IN TXT "v=DMARC1; p=none; rua=mailto:bureau@ulap.example.org"'
            in lines(records))
    default, _ = association_records(tenant(), ADDRESSES, None, RELAY)
    assert 'cloud.ulap.example.org. 3600 IN TXT "v=spf1 include:spf.hosting.example.net -all"' in lines(default)


def test_what_data_cannot_tell_is_named_not_guessed():
    no_spf = parse_relay({"host": "smtp.hosting.example.net", "login": "x"})
    records, missing = association_records(tenant(), {"web-1": ("203.0.113.10", None)}, None, no_spf)
    assert any("gestion.ulap.example.org" in m and "web-2" in m for m in missing)
    assert any("smtp.hosting.example.net has no `spf`" in m for m in missing)
    assert not any(r.type == "CAA" for r in records)
    text = zone_text(tenant(), records, missing)
    assert text.startswith("; ULAP (ulap)") and "; MISSING: " in text


def test_the_caa_issuer_is_known_for_lets_encrypt_and_unknown_for_the_labs_pebble():
    assert caa_issuer({}) == "letsencrypt.org"
    assert caa_issuer({"acme_directory": "https://127.0.0.1:14000/dir"}) is None
    assert caa_issuer({"acme_directory": "https://acme.example/dir", "acme_caa_issuer": "example.com"}) == "example.com"


def test_public_addresses_in_the_inventory_are_checked():
    problems = host_data_problems("inventory/prod.py", "web-1", {"public_ipv4": "2001:db8::1",
                                                                 "public_ipv6": "nope"})
    assert [p.field for p in problems] == ["web-1.public_ipv4", "web-1.public_ipv6"]
    assert host_data_problems("inventory/prod.py", "web-1", {"public_ipv4": "203.0.113.10"}) == []
