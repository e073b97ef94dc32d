"""The roles, one concern each. deploy.py runs them in order.

What crosses roles lives here, so that deploy.py and the testinfra checks
compute it the same way.
"""


def firewall_openings(host_data) -> list:
    """Every port a host must open, gathered from the roles that run on it.

    Each role declares its openings (a list of roles.base.Opening); only the base
    role renders the nftables ruleset from this list.
    """
    from roles import base

    return [*base.ssh_openings(host_data)]
