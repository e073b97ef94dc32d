"""`make audit` on the deployed lab: Lynis on every lab host, testssl.sh on every vhost.

Runs after test_lab.py (tests/lab/conftest.py), on the lab it deployed; it only reads (Lynis
writes its own report and log under /var/log on each host). The platform's promise is a
hardening index of at least data `audit_lynis_min_index` (80) on every host, and no testssl
finding worse than OK but the lab-only ones of data `audit_testssl_accepted`
(group_data/lab.py): so `make audit` must pass, and results.json must say why.
"""

from __future__ import annotations

import json

import pytest

from lab.harness import LAB_HOSTS
from tests.lab.test_backup import REPO, run


@pytest.fixture(scope="module")
def audit_run():
    results = REPO / "audit" / "results.json"
    results.unlink(missing_ok=True)  # the figures read below are this run's, never an older run's
    result = run("make", "audit", "INVENTORY=inventory/lab.py", check=False)
    assert results.exists(), result.stdout[-3000:] + result.stderr[-3000:]
    return result, json.loads(results.read_text())


def test_every_lab_host_has_a_hardening_index_and_every_vhost_its_testssl_findings(audit_run):
    _, results = audit_run
    assert sorted(results["hosts"]) == sorted(h.name for h in LAB_HOSTS)
    for name, host in results["hosts"].items():
        assert isinstance(host["hardening_index"], int) and 0 < host["hardening_index"] <= 100, (name, host["problems"])
        assert host["threshold"] == 80, name
    served = {name: sorted(host["testssl"]) for name, host in results["hosts"].items()}
    assert served["web-1"] and served["web-2"], served  # every tenant vhost is on a web host
    for name, host in results["hosts"].items():
        for domain, tls in host["testssl"].items():
            assert tls["error"] is None, (name, domain, tls["error"])
            # pebble's certificate is always graded not ok (chain of trust): testssl really looked
            assert "cert_chain_of_trust" in {f["id"] for f in tls["accepted"]}, (name, domain)


def test_the_exit_status_agrees_with_the_figures(audit_run):
    result, results = audit_run
    failing = {name for name, host in results["hosts"].items()
               if host["hardening_index"] is None or host["hardening_index"] < host["threshold"]
               or any(tls["not_ok"] or tls["error"] for tls in host["testssl"].values())}
    assert {name for name, host in results["hosts"].items() if not host["passed"]} == failing
    assert results["passed"] is (not failing)
    assert (result.returncode == 0) is results["passed"], result.stdout[-3000:]
    for name in failing:
        assert f"FAIL {name}:" in result.stdout


def test_make_audit_passes_on_the_deployed_lab(audit_run):
    result, results = audit_run
    problems = [p for host in results["hosts"].values() for p in host["problems"]]
    assert result.returncode == 0, "\n".join(problems)
    assert "audit: 4 host(s)" in result.stdout and "PASSED" in result.stdout
