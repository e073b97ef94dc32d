"""The benchmark's generated associations are valid tenants, and its summary does the right sums."""

from lab.bench import backup_line, bench_tenant, summarize, table, tenant_backup_units, write_tenants
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
    assert summary["summed_process_rss_per_additional_tenant_kib"] == 6_000
    assert summary["host_resident_per_additional_tenant_kib"] == 2_000
    # The target is checked on the host's resident set (PSS summed), the RSS sum reported.
    assert summary["rss_target_met"] is True
    assert summary["summed_process_rss_under_target"] is False
    runs[1]["idle_pss_kib"] = 50_000 + 9 * 5_200
    assert summarize(runs)["rss_target_met"] is False
    assert summary["noop_ratio"] == 2.5
    assert summary["noop_target_met"] is True


def test_backup_figures_name_the_tenant_jobs_and_reach_the_table():
    assert tenant_backup_units("bench01") == ["assotic-backup-bench01-nextcloud.service",
                                              "assotic-backup-bench01-paheko.service"]
    backup = {"tenant": "bench01", "jobs": tenant_backup_units("bench01"), "first_night_s": 4.2,
              "unchanged_night_s": 2.1, "repository_bytes_before": 1_500_000,
              "unchanged_night_growth_bytes": 6_000, "unchanged_night_written_bytes": 9_000,
              "restore_s": 3.3}
    line = backup_line(backup)
    assert "unchanged night 2.1 s" in line and "+6000 bytes net" in line and "9000 bytes written" in line and "restore 3.3 s" in line
    runs = [{"tenants": 1, "converge_s": 60.0, "noop_s": 4.0, "noop_changed_operations": 0,
             "idle_rss_kib": 100_000, "idle_pss_kib": 50_000, "backup": backup},
            {"tenants": 10, "converge_s": 200.0, "noop_s": 10.0, "noop_changed_operations": 0,
             "idle_rss_kib": 154_000, "idle_pss_kib": 68_000}]
    assert table(runs, summarize(runs)).splitlines()[-1] == line
