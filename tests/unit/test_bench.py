"""The benchmark's generated associations are valid tenants, and its summary does the right sums."""

from assotic.bench import bench_tenant, summarize, write_tenants
from assotic.tenants import load_tenants


def test_generated_associations_pass_the_tenant_schema(tmp_path):
    write_tenants(tmp_path, 10)
    loaded, problems = load_tenants(tmp_path)
    assert problems == []
    assert len(loaded) == 10
    assert bench_tenant(3)["slug"] == "bench03"


def test_summary_reports_memory_per_additional_tenant_and_noop_ratio():
    runs = [{"tenants": 1, "noop_s": 4.0, "idle_rss_kib": 100_000, "idle_pss_kib": 50_000},
            {"tenants": 10, "noop_s": 10.0, "idle_rss_kib": 100_000 + 9 * 6_000,
             "idle_pss_kib": 50_000 + 9 * 2_000}]
    summary = summarize(runs)
    assert summary["rss_per_additional_tenant_kib"] == 6_000
    assert summary["pss_per_additional_tenant_kib"] == 2_000
    assert summary["rss_target_met"] is False
    assert summary["noop_ratio"] == 2.5
    assert summary["noop_target_met"] is True
