"""Security audit of every host of an inventory: Lynis on each host, testssl.sh on each vhost.

    python -m commands audit --inventory inventory/<name>.py [--data audit_lynis_min_index=70]

For every host, in parallel: Debian's Lynis runs over SSH as root (`lynis audit system
--quick`); its report file is read back and the hardening index, the warnings and the
suggestions are printed. From this machine, Debian's testssl.sh checks every domain the host
serves (the vhosts of the deploy's plan, roles/plan.py), at the host's data `audit_address`,
else its ssh_hostname, else its name. Read-only: nothing is installed or changed on a host
(Lynis writes its own report and log under /var/log, where a sysadmin finds the details).

Exits 1 when a host's index is under data `audit_lynis_min_index` (group_data/all.py), when
testssl grades a finding worse than OK that is not in data `audit_testssl_accepted`, or when a
host could not be audited; exits 2, auditing nothing, when the audit's data is wrong. Writes
audit/results.json whenever hosts were audited. See docs/audit.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from assotic.preflight import REPO_ROOT, load_inventory_like_pyinfra
from commands.remote import host_plan, run_remote

RESULTS = REPO_ROOT / "audit" / "results.json"

# Lynis's own default places when run as root (LOGDIR=/var/log in /usr/sbin/lynis), spelled
# out so that the command says where a sysadmin reads the details of each test.
LYNIS_REPORT = "/var/log/lynis-report.dat"
LYNIS_LOG = "/var/log/lynis.log"
# --quick: no pause between sections; --quiet: nothing on screen (the report file is what we
# read); --no-colors: no escape codes in anything it prints (errors). The project profile
# /etc/lynis/custom.prf (roles/base) is read by Lynis on its own, next to default.prf.
LYNIS_COMMAND = (f"lynis audit system --quick --quiet --no-colors "
                 f"--report-file {LYNIS_REPORT} --log-file {LYNIS_LOG}")
LYNIS_MISSING_EXIT = 127
# Measured in the lab: 135-265 s per host, four at once with testssl on 2 shared cores (docs/audit.md).
LYNIS_TIMEOUT_S = 600

# The checks that say whether a vhost's TLS is sound, and none of the slow ones (cipher per
# protocol, client simulation). Per vhost, what may differ from one server block to the next:
# the protocols, the server's defaults (its certificate, chain of trust, expiry, OCSP/CRL) and
# the HTTP security headers (HSTS). Once per host, with its first vhost: cipher categories,
# forward secrecy and the known vulnerabilities, which depend on the TLS settings every vhost
# includes from the same snippet (templates/nginx/snippet-tls.conf.j2). Measured in the lab
# while Lynis ran: 19-139 s per vhost (docs/audit.md).
TESTSSL_PER_VHOST = ("--protocols", "--server-defaults", "--headers")
TESTSSL_PER_HOST = ("--std", "--fs", "--vulnerable")
TESTSSL_TIMEOUT_S = 300
TESTSSL_CONNECT_TIMEOUT_S = 10
# A bound on each `openssl s_client` testssl starts, so that one that hangs cannot hold the
# run until TESTSSL_TIMEOUT_S; on the lab's busy machine a call takes well under a second.
TESTSSL_OPENSSL_TIMEOUT_S = 30
# testssl 3.0's session resumption check (sub_session_resumption in /usr/bin/testssl) runs
# `openssl s_client -sess_out FILE </dev/null`: s_client meets the end of its input as soon
# as the TLS 1.3 handshake is done and closes, so it keeps the server's NewSessionTicket
# (sent after the handshake) only when the ticket came first. When it did not, FILE stays
# empty, the second s_client (-sess_in FILE) stops before connecting ("Can't open session
# file"), and testssl writes sessionresumption_ticket WARN "check failed because of connect
# problem": in the lab, 13 of 30 such s_client runs lost the ticket, 0 of 30 with their input
# open half a second (docs/audit.md). So testssl gets an openssl (--openssl) that keeps the
# input of those calls, and only those (-sess_out), open OPENSSL_SESSION_WAIT_S.
OPENSSL_SESSION_WAIT_S = 1
OPENSSL_WRAPPER = """#!/bin/sh
# Written by assotic's make audit (commands/audit.py) for one testssl run, then removed.
case " $* " in
    *" -sess_out "*) sleep {wait} | {openssl} "$@"; exit $? ;;
esac
exec {openssl} "$@"
"""
# A vhost with a finding testssl could still not check (WARN) is tested once more; a WARN
# the second time counts.
TESTSSL_ATTEMPTS = 2
# testssl's severities (testssl.sh fileout): OK and INFO are fine, DEBUG is chatter; LOW to
# CRITICAL are the findings it prints as problems ("NOT ok"); WARN and FATAL mean it could not
# test something, which an audit must not take for a pass.
TESTSSL_FINE = frozenset({"OK", "INFO", "DEBUG"})
# Parallel testssl runs from this machine (each one runs many openssl processes).
TESTSSL_WORKERS = 2

DEFAULT_MIN_INDEX = 80  # when the inventory's data says nothing (group_data/all.py says 80)


@dataclass(frozen=True)
class LynisItem:
    """One warning[] or suggestion[] line of a Lynis report."""

    test_id: str
    text: str
    details: str = ""  # "-" in the report when there are none

    def line(self) -> str:
        return f"[{self.test_id}] {self.text}" + (f" ({self.details})" if self.details else "")


@dataclass(frozen=True)
class LynisReport:
    hardening_index: int | None
    warnings: tuple[LynisItem, ...]
    suggestions: tuple[LynisItem, ...]


@dataclass(frozen=True)
class TlsFinding:
    """One testssl.sh finding graded worse than OK."""

    id: str
    severity: str
    finding: str
    accepted_because: str = ""  # the reason given in data audit_testssl_accepted, if any


@dataclass
class VhostAudit:
    domain: str
    address: str
    checks: tuple[str, ...] = TESTSSL_PER_VHOST
    dns_lookups: bool = True  # data audit_testssl_dns_lookups
    findings: list[TlsFinding] = field(default_factory=list)  # not ok and not accepted
    accepted: list[TlsFinding] = field(default_factory=list)  # not ok, in audit_testssl_accepted
    seconds: float = 0.0
    attempts: int = 0
    retried_because: list[TlsFinding] = field(default_factory=list)  # the WARNs of an attempt before the last
    error: str | None = None


@dataclass
class HostAudit:
    host: str
    threshold: int
    hardening_index: int | None = None
    warnings: list[LynisItem] = field(default_factory=list)
    suggestions: list[LynisItem] = field(default_factory=list)
    lynis_seconds: float = 0.0
    vhosts: list[VhostAudit] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


# --- Pure functions: what a report says, and whether it passes -----------------------------------

def parse_lynis_report(text: str) -> LynisReport:
    """A Lynis report file (`key=value` lines; `key[]=` repeated for lists; warning[] and
    suggestion[] values are `TEST-ID|text|details|solution|`, "-" for an empty field)."""
    index, warnings, suggestions = None, [], []
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep or line.startswith("#"):
            continue
        if key == "hardening_index":
            index = int(value)
        elif key in ("warning[]", "suggestion[]"):
            test_id, text_, details = (value.split("|") + ["", "", ""])[:3]
            item = LynisItem(test_id, text_, "" if details == "-" else details)
            (warnings if key == "warning[]" else suggestions).append(item)
    return LynisReport(index, tuple(warnings), tuple(suggestions))


def parse_testssl_json(text: str) -> list[TlsFinding]:
    """The findings of a testssl.sh flat JSON file (--jsonfile) graded worse than OK."""
    return [TlsFinding(f["id"], f["severity"], f.get("finding", ""))
            for f in json.loads(text) if f["severity"] not in TESTSSL_FINE]


def split_accepted(findings: list[TlsFinding], accepted: dict[str, str]) -> tuple[list[TlsFinding], list[TlsFinding]]:
    """(findings that count, findings whose id the inventory accepts, with its reason)."""
    return ([f for f in findings if f.id not in accepted],
            [replace(f, accepted_because=accepted[f.id]) for f in findings if f.id in accepted])


def host_problems(host: str, index: int | None, threshold: int, vhosts: list[VhostAudit]) -> list[str]:
    """One line per reason the host fails the audit."""
    problems = []
    if index is not None and index < threshold:
        problems.append(f"{host}: Lynis hardening index {index} is under audit_lynis_min_index {threshold}")
    for vhost in vhosts:
        if vhost.error:
            problems.append(f"{host}: {vhost.domain}: {vhost.error}")
        for f in vhost.findings:
            problems.append(f"{host}: {vhost.domain}: testssl {f.id} {f.severity}: {f.finding}")
    return problems


# --- Running the tools ---------------------------------------------------------------------------

def lynis_script() -> str:
    """Bash run as root on the host: Lynis, then its report on stdout. Lynis missing: exit 127,
    nothing installed (the base role installs it; an audit changes nothing)."""
    return (f"command -v lynis >/dev/null || {{ echo 'lynis is not installed' >&2; exit {LYNIS_MISSING_EXIT}; }}\n"
            f"{LYNIS_COMMAND} >&2\n"
            f"cat {LYNIS_REPORT}\n")


def run_lynis(pyinfra_host, audit: HostAudit) -> None:
    started = time.monotonic()
    try:
        result = run_remote(pyinfra_host, lynis_script(), timeout=LYNIS_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        audit.problems.append(f"{audit.host}: Lynis did not finish within {LYNIS_TIMEOUT_S} s")
        return
    finally:
        audit.lynis_seconds = round(time.monotonic() - started, 1)
    if result.returncode == LYNIS_MISSING_EXIT:
        audit.problems.append(f"{audit.host}: lynis is not installed (roles/base installs it: deploy the host)")
        return
    report = parse_lynis_report(result.stdout) if result.returncode == 0 else None
    if report is None or report.hardening_index is None:
        audit.problems.append(f"{audit.host}: Lynis failed (exit {result.returncode}): "
                              f"{(result.stderr.strip() or result.stdout.strip())[-500:]}")
        return
    audit.hardening_index = report.hardening_index
    audit.warnings, audit.suggestions = list(report.warnings), list(report.suggestions)


def write_openssl_wrapper(folder: Path) -> Path:
    """The openssl testssl runs (OPENSSL_WRAPPER): Debian's, its session calls given time."""
    openssl = shutil.which("openssl") or "/usr/bin/openssl"
    wrapper = folder / "openssl"
    wrapper.write_text(OPENSSL_WRAPPER.format(wait=OPENSSL_SESSION_WAIT_S, openssl=openssl))
    wrapper.chmod(0o700)
    return wrapper


def testssl_argv(vhost: VhostAudit, json_file: Path, openssl: Path | None = None) -> list[str]:
    """--quiet: no banner; --color 0: no escape codes; --warnings off: never stop to ask.
    Without DNS lookups (`--nodns none`), testssl asks no resolver anything: no CAA record
    (DNS_CAArecord becomes INFO "check skipped as instructed"), no reverse name of the address."""
    dns = () if vhost.dns_lookups else ("--nodns", "none")
    return ["testssl", "--quiet", "--color", "0", "--warnings", "off",
            "--connect-timeout", str(TESTSSL_CONNECT_TIMEOUT_S), "--openssl-timeout", str(TESTSSL_OPENSSL_TIMEOUT_S),
            *(("--openssl", str(openssl)) if openssl else ()), *dns, "--ip", vhost.address, "--jsonfile", str(json_file), *vhost.checks, f"https://{vhost.domain}"]


def untested(findings: list[TlsFinding]) -> list[TlsFinding]:
    """The findings testssl could not check (WARN): worth one more attempt (TESTSSL_ATTEMPTS)."""
    return [f for f in findings if f.severity == "WARN"]


def testssl_once(vhost: VhostAudit) -> list[TlsFinding] | None:
    """One testssl run of the vhost: its findings worse than OK, or None (vhost.error says why)."""
    with tempfile.TemporaryDirectory(prefix="assotic-audit-") as folder:
        json_file = Path(folder) / "testssl.json"
        try:
            result = subprocess.run(testssl_argv(vhost, json_file, write_openssl_wrapper(Path(folder))),
                                    capture_output=True, text=True, timeout=TESTSSL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            vhost.error = f"testssl did not finish within {TESTSSL_TIMEOUT_S} s"
            return None
        if not json_file.exists() or not json_file.read_text().strip():
            vhost.error = f"testssl wrote no findings (exit {result.returncode}): {result.stdout.strip()[-500:]}"
            return None
        vhost.error = None
        return parse_testssl_json(json_file.read_text())


def run_testssl(vhost: VhostAudit, accepted: dict[str, str], attempt=testssl_once) -> None:
    started = time.monotonic()
    findings = None
    while vhost.attempts < TESTSSL_ATTEMPTS:
        vhost.attempts += 1
        findings = attempt(vhost)
        if findings is None or not untested(findings) or vhost.attempts == TESTSSL_ATTEMPTS:
            break
        vhost.retried_because += untested(findings)
    vhost.seconds = round(time.monotonic() - started, 1)
    if findings is not None:
        vhost.findings, vhost.accepted = split_accepted(findings, accepted)


def audit_address(pyinfra_host) -> str:
    """Where testssl connects: data audit_address, else ssh_hostname, else the host's name."""
    data = pyinfra_host.data
    return data.get("audit_address") or data.get("ssh_hostname") or pyinfra_host.name


def data_problems(host: str, data) -> list[str]:
    """Every problem of the audit's data for one host (group_data, the inventory, --data),
    found before any host is reached."""
    problems = []
    index = data.get("audit_lynis_min_index")
    if index is not None and (isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= 100):
        problems.append(f"{host}.audit_lynis_min_index: a whole number from 0 to 100 (MIN_INDEX=<n> "
                        f"for one run); got {index!r}")
    accepted = data.get("audit_testssl_accepted")
    if accepted is not None and not (isinstance(accepted, dict) and all(
            isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in accepted.items())):
        problems.append(f"{host}.audit_testssl_accepted: a mapping of testssl finding ids to the "
                        f"reason each is accepted, like {{\"cert_revocation\": \"...\"}}; got {accepted!r}")
    lookups = data.get("audit_testssl_dns_lookups")
    if lookups is not None and not isinstance(lookups, bool):
        problems.append(f"{host}.audit_testssl_dns_lookups: True or False; got {lookups!r}")
    return problems


def audit_host(pyinfra_host, testssl_pool: ThreadPoolExecutor) -> HostAudit:
    data = pyinfra_host.data
    index = data.get("audit_lynis_min_index")
    threshold = DEFAULT_MIN_INDEX if index is None else index
    accepted = dict(data.get("audit_testssl_accepted") or {})
    dns_lookups = data.get("audit_testssl_dns_lookups") is not False
    audit = HostAudit(pyinfra_host.name, threshold)
    try:
        # "standin": the domains do not depend on releases, and no release file is needed here.
        domains = host_plan(pyinfra_host, missing_release="standin").needs.domains
    except Exception as err:  # unreachable host: a failed audit, named
        audit.problems.append(f"{audit.host}: cannot plan the host: {err}")
        return audit
    address = audit_address(pyinfra_host)
    audit.vhosts = [VhostAudit(domain, address, TESTSSL_PER_VHOST + (TESTSSL_PER_HOST if n == 0 else ()),
                               dns_lookups)
                    for n, domain in enumerate(domains)]
    tls_runs = [testssl_pool.submit(run_testssl, vhost, accepted) for vhost in audit.vhosts]
    run_lynis(pyinfra_host, audit)
    for run_ in tls_runs:
        run_.result()
    audit.problems += host_problems(audit.host, audit.hardening_index, threshold, audit.vhosts)
    return audit


# --- Output --------------------------------------------------------------------------------------

def print_host(audit: HostAudit) -> None:
    verdict = "PASS" if audit.passed else "FAIL"
    index = "none" if audit.hardening_index is None else str(audit.hardening_index)
    print(f"\n== {audit.host}: {verdict}  Lynis hardening index {index} (at least {audit.threshold} "
          f"wanted; {audit.lynis_seconds:.0f} s)")
    print(f"   Lynis warnings ({len(audit.warnings)}): fix these first")
    for item in audit.warnings:
        print(f"     {item.line()}")
    print(f"   Lynis suggestions not yet handled ({len(audit.suggestions)}): details in {LYNIS_LOG} on the host")
    for item in audit.suggestions:
        print(f"     {item.line()}")
    if not audit.vhosts:
        print("   TLS: this host serves no vhost")
    for vhost in audit.vhosts:
        state = "error" if vhost.error else f"{len(vhost.findings)} NOT ok"
        again = f", {vhost.attempts} attempts" if vhost.attempts > 1 else ""
        print(f"   TLS https://{vhost.domain} at {vhost.address} (testssl, {vhost.seconds:.0f} s{again}): {state}")
        for f in vhost.retried_because:
            print(f"     tested again after [{f.id}] {f.severity}: {f.finding}")
        for f in vhost.findings:
            print(f"     [{f.id}] {f.severity}: {f.finding}")
        for f in vhost.accepted:
            print(f"     accepted [{f.id}] {f.severity}: {f.finding} -- {f.accepted_because}")
    for problem in audit.problems:
        print(f"   FAIL {problem}")


def results_document(inventory: str, audits: list[HostAudit], seconds: float) -> dict:
    """What audit/results.json holds."""
    hosts = {}
    for a in audits:
        hosts[a.host] = {
            "hardening_index": a.hardening_index, "threshold": a.threshold,
            "warnings": [asdict(i) for i in a.warnings], "suggestions": [asdict(i) for i in a.suggestions],
            "lynis_seconds": a.lynis_seconds,
            "testssl": {v.domain: {"address": v.address, "checks": list(v.checks),
                                   "not_ok": [asdict(f) for f in v.findings],
                                   "accepted": [asdict(f) for f in v.accepted], "seconds": v.seconds,
                                   "attempts": v.attempts,
                                   "retried_because": [asdict(f) for f in v.retried_because],
                                   "error": v.error} for v in a.vhosts},
            "problems": a.problems, "passed": a.passed,
        }
    return {"inventory": inventory, "seconds": round(seconds, 1),
            "passed": all(a.passed for a in audits), "hosts": hosts}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--inventory", required=True)
    parser.add_argument("--data", action="append", default=[], metavar="KEY=VALUE",
                        help="override one data value for this run, as pyinfra's --data does "
                             "(e.g. audit_lynis_min_index=60)")


def override_data(pairs: list[str]) -> dict:
    from pyinfra_cli.util import parse_cli_arg

    data = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"audit: --data wants KEY=VALUE, got {pair!r}")
        data[key] = parse_cli_arg(value)
    return data


def run(args: argparse.Namespace) -> int:
    if shutil.which("testssl") is None:
        print("audit: testssl is not installed on this machine (apt-get install testssl.sh)")
        return 1
    started = time.monotonic()
    inventory = load_inventory_like_pyinfra(Path(args.inventory).resolve(), REPO_ROOT,
                                            override_data=override_data(args.data))
    hosts = list(inventory)
    problems = [problem for h in hosts for problem in data_problems(h.name, h.data)]
    if problems:
        print("audit: the audit's data is wrong; no host was audited:\n  " + "\n  ".join(problems))
        return 2
    with ThreadPoolExecutor(TESTSSL_WORKERS) as testssl_pool, ThreadPoolExecutor(max(1, len(hosts))) as host_pool:
        audits = list(host_pool.map(lambda h: audit_host(h, testssl_pool), hosts))
    for audit in audits:
        print_host(audit)
    seconds = time.monotonic() - started
    document = results_document(args.inventory, audits, seconds)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")
    failed = [a.host for a in audits if not a.passed]
    print(f"\naudit: {len(audits)} host(s) in {seconds:.0f} s, "
          f"{'PASSED' if not failed else 'FAILED on ' + ', '.join(failed)}; "
          f"figures in {RESULTS.relative_to(REPO_ROOT)}")
    return 1 if failed else 0
