"""The idempotence check reads pyinfra's real output format; it must see a single change."""

from assotic.runlog import changed_operation_names, changed_operations_per_host

OUTPUT = """\
--> Starting operation: Base host | Install base packages
    \x1b[1m[web-1]\x1b[0m \x1b[36mNo changes\x1b[0m
    \x1b[1m[web-2]\x1b[0m \x1b[32mSuccess\x1b[0m
--> Starting operation: Base host | Render /etc/nftables.conf
    [web-1] No changes
    [web-2] No changes
"""


def test_counts_changed_operations_per_host_through_colour_codes():
    assert changed_operations_per_host(OUTPUT) == {"web-1": 0, "web-2": 1}


def test_names_the_operation_that_changed():
    assert changed_operation_names(OUTPUT, "web-2") == ["Base host | Install base packages"]
    assert changed_operation_names(OUTPUT, "web-1") == []


def test_no_status_line_means_no_host_counted():
    assert changed_operations_per_host("--> Loading config...\n") == {}
