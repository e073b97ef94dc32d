"""commands/audit.py: reading a Lynis report and a testssl.sh JSON file, and the pass/fail
decision. The samples are real: the Lynis report of lab host web-2 (Debian 13, Lynis 3.1.4,
before the base role's hardening) and testssl.sh 3.0.8's JSON for a lab vhost of web-1
(every check `make audit` runs, pebble's certificate, on a busy machine: one check could not
connect), both captured on 2026-12-03."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from commands import audit
from commands.__main__ import COMMANDS, parser_of
from tests.unit.test_remote import host

SAMPLES = Path(__file__).parent / "audit_samples"
LYNIS_SAMPLE = (SAMPLES / "lynis-report-web-2-trixie.dat").read_text()
TESTSSL_SAMPLE = (SAMPLES / "testssl-cloud.ulap.example.org.json").read_text()
# group_data/lab.py's ids (the sample was captured with DNS lookups, which the lab now skips:
# its DNS_CAArecord LOW is what a production domain without a CAA record gets).
REPO = Path(__file__).resolve().parents[2]
LAB_ACCEPTED = {"cert_chain_of_trust": "pebble", "cert_revocation": "pebble", "cert_validityPeriod": "pebble"}


def test_the_lynis_report_gives_the_index_the_warnings_and_the_suggestions():
    report = audit.parse_lynis_report(LYNIS_SAMPLE)
    assert report.hardening_index == 64
    assert [w.test_id for w in report.warnings] == ["PKGS-7388"] + ["DBS-1828"] * 4
    assert report.warnings[0] == audit.LynisItem(
        "PKGS-7388", "Can't find any security repository in /etc/apt/sources.list or sources.list.d directory")
    # details kept when Lynis gives some, "-" read as none
    assert report.warnings[1].details == "/etc/postgresql/17/main/postgresql.conf"
    assert report.warnings[1].line() == (
        "[DBS-1828] PostgreSQL configuration file /etc/postgresql/17/main/postgresql.conf is world readable "
        "and might leak sensitive details (/etc/postgresql/17/main/postgresql.conf)")
    assert len(report.suggestions) == LYNIS_SAMPLE.count("\nsuggestion[]=")
    assert audit.LynisItem("AUTH-9230", "Configure password hashing rounds in /etc/login.defs") in report.suggestions


def test_a_report_without_an_index_says_so():
    # What a Lynis run cut short leaves: the command then names the host as not audited.
    report = audit.parse_lynis_report("# Lynis Report\nreport_version_major=1\n")
    assert report.hardening_index is None and report.warnings == report.suggestions == ()


def test_testssl_findings_worse_than_ok_are_the_not_ok_ones():
    findings = audit.parse_testssl_json(TESTSSL_SAMPLE)
    assert [(f.id, f.severity) for f in findings] == [
        ("sessionresumption_ticket", "WARN"),  # testssl could not test it: not a pass either
        ("cert_chain_of_trust", "CRITICAL"), ("cert_validityPeriod", "MEDIUM"),
        ("cert_revocation", "HIGH"), ("DNS_CAArecord", "LOW")]
    assert findings[0].finding == "check failed because of connect problem"
    every = json.loads(TESTSSL_SAMPLE)
    assert len(every) == 92 and {f["severity"] for f in every} - {f.severity for f in findings} >= {"OK", "INFO"}


def test_a_finding_testssl_could_not_check_is_not_a_pass():
    text = json.dumps([{"id": "sessionresumption_ticket", "severity": "WARN",
                        "finding": "check failed because of connect problem"},
                       {"id": "HSTS", "severity": "OK", "finding": "365 days"}])
    assert [f.id for f in audit.parse_testssl_json(text)] == ["sessionresumption_ticket"]
    problems = audit.host_problems("web-1", 90, 80, [vhost(audit.parse_testssl_json(text))])
    assert problems == ["web-1: cloud.ulap.example.org: testssl sessionresumption_ticket WARN: "
                        "check failed because of connect problem"]


def test_accepted_ids_are_set_aside_with_their_reason():
    findings = audit.parse_testssl_json(TESTSSL_SAMPLE)
    counted, accepted = audit.split_accepted(findings, {"cert_chain_of_trust": "the lab CA"})
    assert [f.id for f in counted] == ["sessionresumption_ticket", "cert_validityPeriod", "cert_revocation",
                                       "DNS_CAArecord"]
    assert [(f.id, f.accepted_because) for f in accepted] == [("cert_chain_of_trust", "the lab CA")]
    assert audit.split_accepted(findings, {}) == (findings, [])  # production default: nothing accepted


def certificate_findings() -> list[audit.TlsFinding]:
    """The sample's certificate findings: all but the one testssl could not check and the CAA
    record it looked up."""
    return [f for f in audit.parse_testssl_json(TESTSSL_SAMPLE)
            if f.severity != "WARN" and f.id != "DNS_CAArecord"]


def test_a_missing_caa_record_counts_unless_accepted():
    findings = [f for f in audit.parse_testssl_json(TESTSSL_SAMPLE) if f.severity != "WARN"]
    assert audit.host_problems("web-1", 90, 80, [vhost(findings)]) == [
        "web-1: cloud.ulap.example.org: testssl DNS_CAArecord LOW: --"]


def vhost(findings) -> audit.VhostAudit:
    counted, accepted = audit.split_accepted(findings, LAB_ACCEPTED)
    return audit.VhostAudit("cloud.ulap.example.org", "172.17.0.14", findings=counted, accepted=accepted)


def test_an_index_under_the_threshold_fails_and_says_both_figures():
    tls = [vhost(certificate_findings())]
    assert audit.host_problems("web-2", 64, 80, tls) == [
        "web-2: Lynis hardening index 64 is under audit_lynis_min_index 80"]
    assert audit.host_problems("web-2", 80, 80, tls) == []  # at the threshold: passes
    assert audit.host_problems("web-2", 64, 60, tls) == []


def test_a_not_ok_finding_outside_the_accepted_list_fails():
    findings = certificate_findings() + [audit.TlsFinding("TLS1", "LOW", "offered (deprecated)")]
    assert audit.host_problems("web-1", 90, 80, [vhost(findings)]) == [
        "web-1: cloud.ulap.example.org: testssl TLS1 LOW: offered (deprecated)"]


def test_a_vhost_testssl_could_not_check_fails():
    broken = audit.VhostAudit("cloud.ulap.example.org", "172.17.0.14", error="testssl wrote no findings (exit 1)")
    assert audit.host_problems("web-1", 90, 80, [broken]) == [
        "web-1: cloud.ulap.example.org: testssl wrote no findings (exit 1)"]


def test_the_audit_address_is_audit_address_then_ssh_hostname_then_the_name():
    assert audit.audit_address(host("web-1", audit_address="172.17.0.14", ssh_hostname="127.0.0.1")) == "172.17.0.14"
    assert audit.audit_address(host("web-1", ssh_hostname="203.0.113.7")) == "203.0.113.7"
    assert audit.audit_address(host("web-1.example.org")) == "web-1.example.org"


def test_testssl_is_pointed_at_the_address_with_the_vhost_name_and_a_json_file(tmp_path):
    first = audit.VhostAudit("cloud.ulap.example.org", "172.17.0.14",
                             checks=audit.TESTSSL_PER_VHOST + audit.TESTSSL_PER_HOST)
    argv = audit.testssl_argv(first, tmp_path / "out.json")
    assert argv[0] == "testssl" and argv[-1] == "https://cloud.ulap.example.org"
    assert argv[argv.index("--ip") + 1] == "172.17.0.14"
    assert argv[argv.index("--jsonfile") + 1] == str(tmp_path / "out.json")
    assert argv[argv.index("--color") + 1] == "0" and "--quiet" in argv
    assert {"--protocols", "--server-defaults", "--headers", "--vulnerable"} <= set(argv)
    assert "--nodns" not in argv  # production: DNS lookups, the CAA record checked


def test_without_dns_lookups_testssl_asks_no_resolver(tmp_path):
    argv = audit.testssl_argv(audit.VhostAudit("cloud.ulap.example.org", "172.17.0.14", dns_lookups=False),
                              tmp_path / "out.json")
    assert argv[argv.index("--nodns") + 1] == "none"
    assert argv[argv.index("--ip") + 1] == "172.17.0.14"  # so testssl needs no name resolved


def test_the_lynis_script_reads_back_the_report_it_names_and_installs_nothing():
    script = audit.lynis_script()
    assert f"--report-file {audit.LYNIS_REPORT}" in script and f"cat {audit.LYNIS_REPORT}" in script
    assert "--quick" in script and "--no-colors" in script
    assert "apt-get" not in script and f"exit {audit.LYNIS_MISSING_EXIT}" in script


def test_results_json_has_every_figure_per_host():
    report = audit.parse_lynis_report(LYNIS_SAMPLE)
    web2 = audit.HostAudit("web-2", 80, report.hardening_index, list(report.warnings), list(report.suggestions),
                           lynis_seconds=190.0, vhosts=[vhost(certificate_findings())])
    web2.problems = audit.host_problems("web-2", web2.hardening_index, 80, web2.vhosts)
    document = json.loads(json.dumps(audit.results_document("inventory/lab.py", [web2], 200.0)))
    assert document["passed"] is False
    entry = document["hosts"]["web-2"]
    assert (entry["hardening_index"], entry["threshold"], entry["passed"]) == (64, 80, False)
    assert entry["warnings"][0]["test_id"] == "PKGS-7388" and len(entry["suggestions"]) == len(report.suggestions)
    tls = entry["testssl"]["cloud.ulap.example.org"]
    assert tls["not_ok"] == [] and {f["id"] for f in tls["accepted"]} == set(LAB_ACCEPTED)


def test_data_overrides_are_parsed_like_pyinfra_data():
    assert audit.override_data(["audit_lynis_min_index=60"]) == {"audit_lynis_min_index": 60}
    with pytest.raises(SystemExit):
        audit.override_data(["audit_lynis_min_index"])


def test_every_problem_of_the_audit_data_is_named_with_its_host_and_field():
    problems = audit.data_problems("web-1", {"audit_lynis_min_index": "abc",
                                             "audit_testssl_accepted": ["cert_revocation"],
                                             "audit_testssl_dns_lookups": "no"})
    assert [p.split(":")[0] for p in problems] == [
        "web-1.audit_lynis_min_index", "web-1.audit_testssl_accepted", "web-1.audit_testssl_dns_lookups"]
    assert "a whole number from 0 to 100" in problems[0] and "'abc'" in problems[0]
    assert audit.data_problems("web-1", {"audit_lynis_min_index": 101}) != []
    assert audit.data_problems("web-1", {"audit_lynis_min_index": True}) != []
    assert audit.data_problems("web-1", {"audit_testssl_accepted": {"cert_revocation": " "}}) != []
    assert audit.data_problems("web-1", {"audit_lynis_min_index": 0, "audit_testssl_accepted": LAB_ACCEPTED,
                                         "audit_testssl_dns_lookups": False}) == []


@pytest.mark.skipif(shutil.which("testssl") is None, reason="testssl.sh is not installed here")
def test_a_bad_min_index_stops_the_audit_before_any_host_is_reached(tmp_path):
    """MIN_INDEX=abc through the CLI: exit 2, the field named, and nobody knocks on the host."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0)
    inventory = tmp_path / "inventory" / "prod.py"
    inventory.parent.mkdir()
    reach = f'{{"ssh_hostname": "127.0.0.1", "ssh_port": {listener.getsockname()[1]}}}'
    inventory.write_text(f'web = [("web-1", {reach}), ("web-2", {reach})]\n')
    env = {**os.environ, "ASSOTIC_SECRETS_FILE": str(tmp_path / "store.enc.json"),
           "ASSOTIC_SECRETS_KEY": str(tmp_path / "secrets.key"), "ASSOTIC_CHECK_ONLY": "1"}
    python = str(Path(sys.executable))
    subprocess.run([python, "-m", "commands", "secrets", "init"], cwd=REPO, env=env, check=True,
                   capture_output=True)
    result = subprocess.run([python, "-m", "commands", "audit", "--inventory", str(inventory),
                             "--data", "audit_lynis_min_index=abc"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    with pytest.raises(BlockingIOError):
        listener.accept()
    listener.close()
    assert result.returncode == 2, result.stdout + result.stderr
    assert "web-1.audit_lynis_min_index: a whole number from 0 to 100" in result.stdout
    assert "no host was audited" in result.stdout


def test_audit_is_a_command_of_the_cli():
    command = COMMANDS["audit"]
    parser = parser_of("audit", command, audit)
    args = parser.parse_args(["--inventory", "inventory/lab.py", "--data", "audit_lynis_min_index=60"])
    assert args.inventory == "inventory/lab.py" and args.data == ["audit_lynis_min_index=60"]


def attempts_giving(*runs):
    """A testssl stand-in for run_testssl: each call gives the next run's findings."""
    given = iter(runs)
    return lambda _vhost: next(given)


TICKET_WARN = audit.TlsFinding("sessionresumption_ticket", "WARN", "check failed because of connect problem")


def test_a_check_testssl_could_not_do_is_run_once_more_and_the_second_run_counts():
    tested = audit.VhostAudit("cloud.ulap.example.org", "172.17.0.14")
    audit.run_testssl(tested, LAB_ACCEPTED, attempts_giving([TICKET_WARN, *certificate_findings()],
                                                            certificate_findings()))
    assert tested.attempts == 2 and tested.retried_because == [TICKET_WARN]
    assert tested.findings == [] and {f.id for f in tested.accepted} == set(LAB_ACCEPTED)


def test_a_check_testssl_could_not_do_twice_fails():
    tested = audit.VhostAudit("cloud.ulap.example.org", "172.17.0.14")
    audit.run_testssl(tested, LAB_ACCEPTED, attempts_giving([TICKET_WARN], [TICKET_WARN], []))
    assert tested.attempts == audit.TESTSSL_ATTEMPTS == 2 and tested.findings == [TICKET_WARN]
    assert audit.host_problems("web-1", 90, 80, [tested]) == [
        "web-1: cloud.ulap.example.org: testssl sessionresumption_ticket WARN: check failed because of connect problem"]


def test_a_clean_run_or_a_real_finding_is_not_run_again():
    for findings in ([], [audit.TlsFinding("TLS1", "LOW", "offered (deprecated)")]):
        tested = audit.VhostAudit("cloud.ulap.example.org", "172.17.0.14")
        audit.run_testssl(tested, {}, attempts_giving(findings, [TICKET_WARN]))
        assert tested.attempts == 1 and tested.findings == findings and tested.retried_because == []


def test_testssl_s_openssl_keeps_the_input_of_its_session_calls_open(tmp_path, monkeypatch):
    # A stand-in openssl that reports how long its input stayed open, and its arguments.
    fake = tmp_path / "fake-openssl"
    fake.write_text('#!/bin/sh\nstart=$(date +%s%N); cat >/dev/null; echo "$(( ($(date +%s%N) - start) / 1000000 )) $*"\n')
    fake.chmod(0o700)
    monkeypatch.setattr(audit.shutil, "which", lambda _name: str(fake))
    wrapper = audit.write_openssl_wrapper(tmp_path)

    def open_ms(*argv):
        result = subprocess.run([str(wrapper), *argv], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                check=True)
        ms, _, args = result.stdout.strip().partition(" ")
        return int(ms), args

    ms, args = open_ms("s_client", "-connect", "172.17.0.14:443", "-sess_out", "/tmp/s")
    assert ms >= audit.OPENSSL_SESSION_WAIT_S * 1000 * 0.9 and args == "s_client -connect 172.17.0.14:443 -sess_out /tmp/s"
    ms, args = open_ms("s_client", "-connect", "172.17.0.14:443", "-sess_in", "/tmp/s")
    assert ms < 500 and args == "s_client -connect 172.17.0.14:443 -sess_in /tmp/s"  # every other call as is
    argv = audit.testssl_argv(audit.VhostAudit("a.example.org", "172.17.0.14"), tmp_path / "j", wrapper)
    assert argv[argv.index("--openssl") + 1] == str(wrapper)
