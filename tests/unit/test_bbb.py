"""roles/bbb and assotic/sip without a host: data checks, every rendered file, the planned
operations against fake Ubuntu facts. BigBlueButton itself never runs here (docs/bbb.md)."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest
from fake_facts import FakeHost

from assotic import preflight, sip
from assotic.preflight import InventoryView
from roles.bbb import model
from roles.bbb.model import BbbDataError, BbbSettings, TurnServer

PASSWORD = "pw&<provider>\"x"
API_SECRET = "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0U1v"
TURN_SECRET = "turn-shared-secret-0123456789"
SIP = {"provider": "sip.example-provider.fr", "username": "0912345678",
       "password_secret": "sip/bbb-1/password", "numbers": ["+33912345678", "+33187654321"],
       "provider_ips": ["203.0.113.0/24", "2001:db8::/32"], "mask_caller_id": True, "pin_attempts": 3}


def settings(**data) -> BbbSettings:
    return BbbSettings.from_data("bbb-1", {"bbb_domain": "meet.example.org", "bbb_sip": SIP, **data},
                                 [TurnServer("turn.example.org")])


def xmllint(text: str) -> None:
    if shutil.which("xmllint") is None:
        pytest.skip("xmllint missing: apt-get install libxml2-utils")
    result = subprocess.run(["xmllint", "--noout", "-"], input=text, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# -- data checks (preflight) ---------------------------------------------------------------------


def test_good_sip_data_passes():
    assert sip.bbb_problems("inventory/x.py", "bbb-1", {"bbb_sip": SIP}) == []


def test_every_sip_problem_is_reported_at_once_with_its_field():
    bad = {**SIP, "numbers": ["0612345678", "+33 9 12"], "provider_ips": [], "pin_attempts": 0,
           "colour": "blue"}
    del bad["username"]
    fields = {p.field for p in sip.bbb_problems("inventory/x.py", "bbb-1", {"bbb_sip": bad})}
    assert fields == {"bbb-1.bbb_sip.numbers", "bbb-1.bbb_sip.provider_ips", "bbb-1.bbb_sip.pin_attempts",
                      "bbb-1.bbb_sip.colour", "bbb-1.bbb_sip.username"}


def test_a_malformed_number_is_named():
    problems = sip.bbb_problems("inventory/x.py", "bbb-1", {"bbb_sip": {**SIP, "numbers": ["+0123"]}})
    assert "E.164" in problems[0].expected and "+0123" in problems[0].expected


def test_version_must_be_a_known_line():
    assert sip.bbb_problems("i.py", "bbb-1", {"bbb_version": "focal-270"})[0].field == "bbb-1.bbb_version"
    assert sip.bbb_problems("i.py", "bbb-1", {"bbb_version": "noble-400"}) == []
    assert sip.bbb_problems("i.py", "bbb-1", {"bbb_version": "jammy-300-3.0.10"}) == []


class Store:
    def __init__(self, names):
        self.names = set(names)

    def __contains__(self, name):
        return name in self.names


def test_a_missing_sip_password_is_a_problem_naming_make_secret_set():
    view = {"bbb-1": {"bbb_sip": SIP}}
    problems = sip.sip_secret_problems("inventory/x.py", view, ["bbb-1"], Store([]))
    assert [p.field for p in problems] == ["bbb-1.bbb_sip.password_secret"]
    assert "make secret-set NAME=sip/bbb-1/password" in problems[0].expected
    assert sip.sip_secret_problems("inventory/x.py", view, ["bbb-1"], Store(["sip/bbb-1/password"])) == []


def test_preflight_refuses_bad_sip_data_of_a_bbb_host():
    view = InventoryView("inventory/x.py", {"bbb": ["bbb-1"]},
                         {"bbb-1": {"bbb_sip": {**SIP, "provider_ips": []}}})
    assert [p.field for p in preflight.inventory_problems(view)] == ["bbb-1.bbb_sip.provider_ips"]


def test_platform_secrets_turn_and_bbb_are_generated():
    view = InventoryView("i.py", {"web": ["web-1"], "bbb": ["bbb-1"], "turn": ["turn-1", "turn-2"]}, {})
    assert preflight.platform_secret_names(view) == ["turn/static_auth_secret", "bbb/bbb-1/api_secret"]
    assert preflight.platform_secret_names(InventoryView("i.py", {"web": ["web-1"]}, {})) == []


def test_example_inventory_passes_make_check_structure():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "inventory" / "example.py").read_text()
    assert "bbb = [" in text and "turn = [" in text and "web = [" in text


# -- rendered files ------------------------------------------------------------------------------


def test_gateway_is_valid_xml_with_the_documented_params():
    text = model.sip_gateway(settings().sip, PASSWORD)
    xmllint(text)
    gateway = ET.fromstring(text).find("gateway")
    params = {p.get("name"): p.get("value") for p in gateway.findall("param")}
    assert gateway.get("name") == "sip.example-provider.fr"
    assert params["username"] == "0912345678" and params["password"] == PASSWORD
    assert params["realm"] == "sip.example-provider.fr" and params["proxy"] == "sip.example-provider.fr"
    assert params["register"] == "true" and params["context"] == "public"


def test_gateway_uses_the_proxy_when_given():
    params = {p.get("name"): p.get("value") for p in ET.fromstring(model.sip_gateway(
        settings(bbb_sip={**SIP, "proxy": "proxy.example-provider.fr"}).sip, "x")).iter("param")}
    assert params["proxy"] == "proxy.example-provider.fr" and params["realm"] == "sip.example-provider.fr"


def dialplan(**sip_data):
    text = model.sip_dialplan(settings(bbb_sip={**SIP, **sip_data}).sip)
    xmllint(text)
    return ET.fromstring(text)


def actions(extension, tag="action"):
    return [(a.get("application"), a.get("data")) for a in extension.iter(tag)]


def test_dialplan_answers_with_dtmf_and_asks_the_pin_with_bounded_tries():
    root = dialplan(pin_attempts=4)
    first, pin, join, bad = root.findall("extension")
    condition = first.find("condition")
    assert condition.get("field") == "destination_number"
    assert "33912345678" in condition.get("expression") and "33187654321" in condition.get("expression")
    apps = [a for a, _ in actions(first)]
    assert apps.index("start_dtmf") < apps.index("answer") < apps.index("transfer")
    digits = dict(actions(pin))["play_and_get_digits"].split()
    assert digits[2] == "4"  # max tries from data
    assert dict(actions(bad))["hangup"] == "CALL_REJECTED"
    assert bad.findall("condition")[1].get("expression") == "^x{4,}$"  # then the call ends


def test_dialplan_transfers_only_to_an_active_conference():
    join = dialplan().findall("extension")[2]
    fields = [c.get("field") for c in join.findall("condition")]
    assert fields == ["destination_number", "${pin}", "${conference ${pin} list}"]
    assert ("transfer", "${pin} XML default") in actions(join)
    assert ("set", "bbb_authorized=true") in actions(join)
    assert actions(join, "anti-action")[0][0] == "transfer"


def test_caller_id_masking_is_optional():
    assert any(a == "set_profile_var" for a, _ in actions(dialplan(mask_caller_id=True)))
    assert not any(a == "set_profile_var" for a, _ in actions(dialplan(mask_caller_id=False)))


def test_turn_stun_servers_lists_stun_turn_and_turns():
    text = model.turn_stun_servers(settings(), TURN_SECRET)
    xmllint(text)
    values = [a.get("value") for a in ET.fromstring(text).iter("{http://www.springframework.org/schema/beans}constructor-arg")]
    assert "stun:turn.example.org:3478" in values
    assert "turn:turn.example.org:3478" in values
    assert "turns:turn.example.org:443?transport=tcp" in values
    assert values.count(TURN_SECRET) == 2


def test_web_properties_set_salt_dial_number_and_footer():
    text = model.web_properties(settings(), API_SECRET)
    lines = dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert lines["securitySalt"] == API_SECRET
    assert lines["bigbluebutton.web.serverURL"] == "https://meet.example.org"
    assert lines["defaultDialAccessNumber"] == "+33912345678"
    assert "%%DIALNUM%%" in lines["defaultWelcomeMessageFooter"]
    assert "%%CONFNUM%%" in lines["defaultWelcomeMessageFooter"]


def test_web_properties_without_sip_have_no_dial_in():
    text = model.web_properties(settings(bbb_sip=None), API_SECRET)
    assert "defaultDialAccessNumber" not in text and "DIALNUM" not in text


def test_bbb_openings_sip_only_from_the_provider():
    openings = model.bbb_openings(settings())
    public = {(o.nft_port, o.protocol) for o in openings if not o.sources}
    assert public == {("80", "tcp"), ("443", "tcp"), ("16384-32768", "udp")}
    sip_openings = [o for o in openings if o.sources]
    assert {(o.nft_port, o.protocol) for o in sip_openings} == {("5060", "udp"), ("5060", "tcp"), ("16384-32768", "udp")}
    assert all(o.sources == ("203.0.113.0/24", "2001:db8::/32") for o in sip_openings)


def test_apply_config_passes_bash_syntax_check():
    text = model.apply_config(settings())
    assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0
    assert "enableUFWRules" not in text  # the firewall is assotic's nftables


def test_apt_source_follows_the_version_line():
    assert model.apt_source_line(settings()) == ("deb [signed-by=/etc/apt/keyrings/bigbluebutton.asc] "
                                                 "https://ubuntu.bigbluebutton.org/jammy-300 bigbluebutton-jammy main")
    assert "noble-400 bigbluebutton-noble" in model.apt_source_line(settings(bbb_version="noble-400"))


# -- requirements (prepare time) -----------------------------------------------------------------

UBUNTU_2204 = {"name": "Ubuntu", "major": 22, "release_meta": {"VERSION_ID": "22.04"}}
DEBIAN_12 = {"name": "Debian", "major": 12, "release_meta": {"VERSION_ID": "12"}}


def test_requirements_pass_on_jammy_4_cores_8_gb():
    assert model.requirement_problems(settings(), UBUNTU_2204, 4, 8_000_000) == []


def test_requirements_name_what_was_found_and_needed():
    problems = model.requirement_problems(settings(), DEBIAN_12, 2, 2_000_000)
    assert "needs Ubuntu 22.04; found Debian 12" in problems[0]
    assert "4 CPU cores; found 2" in problems[1]
    assert "4 GB of memory; found 1.9 GB" in problems[2]
    assert model.requirement_problems(settings(bbb_version="noble-400"), UBUNTU_2204, 8, 9_000_000)


def bbb_host(facts=None, **data) -> FakeHost:
    base = {"bbb_domain": "meet.example.org", "bbb_sip": SIP, **data}
    stub = {"LinuxDistribution": UBUNTU_2204, "Cpus": 4, "MemTotalKb": 8_000_000,
            "Directory": None, "File": None, "Sha1File": None, "Md5File": None, "Sha256File": None,
            "FindInFile": None, "FolderFiles": {}, "PathStats": {},  # a fresh host: nothing there
            "DebPackages": {}, "SystemdStatus": {}, "SystemdEnabled": {}, "Which": "/usr/bin/x",
            "AptSources": [], "DebArch": "amd64", "Command": None, **(facts or {})}
    return FakeHost("bbb-1", {"bbb": ["bbb-1"], "turn": ["turn-1"]}, base, stub,
                    other_hosts={"turn-1": {"turn_domain": "turn.example.org"}})


def test_check_requirements_raises_naming_the_host():
    from roles.bbb import check_requirements

    fake = bbb_host({"LinuxDistribution": DEBIAN_12, "Cpus": 2})
    with pytest.raises(BbbDataError, match=r"bbb-1: cannot run BigBlueButton jammy-300: .*found Debian 12.*found 2"):
        fake.plan(check_requirements)


class Secrets:
    values = {"bbb/bbb-1/api_secret": API_SECRET, "turn/static_auth_secret": TURN_SECRET,
              "sip/bbb-1/password": PASSWORD}

    def get(self, name):
        return self.values[name]


def plan_names(fake: FakeHost):
    from roles.bbb import bigbluebutton, turn_servers_of

    ops = fake.plan(lambda: bigbluebutton(Secrets(), turn_servers_of(fake.inventory)))
    return ops, [op.name.split(" | ", 1)[-1] for op in ops]


def test_first_deploy_plan_on_fake_ubuntu():
    ops, names = plan_names(bbb_host())
    expected_order = [
        "Download BigBlueButton's signing key to /etc/apt/keyrings/bigbluebutton.asc",
        "Render /etc/apt/sources.list.d/bigbluebutton.list",
        "Install BigBlueButton jammy-300",
        "Set BigBlueButton's host name meet.example.org (bbb-conf --setip)",
        "Request a certificate for meet.example.org from https://acme-v02.api.letsencrypt.org/directory",
        "Render /etc/bigbluebutton/bbb-web.properties",
        "Render /etc/bigbluebutton/turn-stun-servers.xml",
        "Render /etc/bigbluebutton/bbb-conf/apply-config.sh",
        "Render /opt/freeswitch/conf/sip_profiles/external/sip.example-provider.fr.xml",
        "Render /opt/freeswitch/conf/dialplan/public/sip.example-provider.fr.xml",
        "Restart BigBlueButton (bbb-conf --restart)",
    ]
    positions = [names.index(n) for n in expected_order]
    assert positions == sorted(positions)
    by_name = {n: op for n, op in zip(names, ops)}
    gateway = by_name["Render /opt/freeswitch/conf/sip_profiles/external/sip.example-provider.fr.xml"]
    assert "chmod 640 /opt/freeswitch/conf/sip_profiles/external/sip.example-provider.fr.xml" in gateway.commands
    assert "chown root:daemon /opt/freeswitch/conf/sip_profiles/external/sip.example-provider.fr.xml" in gateway.commands
    props = by_name["Render /etc/bigbluebutton/bbb-web.properties"]
    assert "chown root:bigbluebutton /etc/bigbluebutton/bbb-web.properties" in props.commands
    for op in ops:  # secrets travel in uploaded files only, never in a command line
        for secret in (PASSWORD, API_SECRET, TURN_SECRET):
            assert all(secret not in c for c in op.commands), op.name


def test_second_deploy_plan_skips_setip_and_certificate():
    import datetime

    now = datetime.datetime.now()
    fake = bbb_host({"FindInFile": ["playback_host: meet.example.org"], "File": {"mode": 644, "mtime": now},
                     "Date": now})
    _, names = plan_names(fake)
    assert not any("--setip" in n or "Request a certificate" in n for n in names)


def test_firewall_openings_of_a_bbb_host():
    from roles import firewall_openings

    comments = {o.comment for o in firewall_openings(bbb_host().host.data, groups=bbb_host().host.groups)}
    assert {"SSH", "BigBlueButton HTTPS", "BigBlueButton WebRTC media",
            "SIP from sip.example-provider.fr", "RTP from sip.example-provider.fr"} <= comments


def test_nextcloud_bbb_jobs_use_the_app_config_keys():
    import json

    jobs = [json.loads(j) for j in model.nextcloud_bbb_jobs("/opt/nc/occ", "/srv/x/config",
                                                            "https://meet.example.org/bigbluebutton/", API_SECRET)]
    assert [j["args"][:3] for j in jobs] == [["config:app:set", "bbb", "api.url"],
                                             ["config:app:set", "bbb", "api.secret"]]
