"""What the lab hosts say when a lab test's command fails: read into its assertion message,
so that a CI log that keeps only the assertion still shows the state of the hosts."""

from __future__ import annotations

import subprocess

from lab.harness import LAB_HOSTS, container_name

# Bounded, read-only probes: SSH and firewall on the backup target, the repository from a
# web host (the path every backup takes), and the units that failed anywhere.
PROBES = {
    "backup": "fail2ban-client status sshd 2>&1 | tail -n 4; nft list table inet f2b-table 2>&1 | head -n 15; "
              "journalctl -u ssh --no-pager -n 25 2>&1",
    "web": ". /usr/local/lib/assotic-backup/lib.sh 2>&1 && timeout 60 \"${RESTIC[@]}\" cat config 2>&1 "
           "| tail -n 5; systemctl --failed --no-legend 2>&1 | head -n 10",
}


def lab_diagnostics(limit: int = 6000) -> str:
    parts = []
    for h in LAB_HOSTS:
        probe = PROBES.get(h.group)
        if probe is None:
            continue
        try:
            result = subprocess.run(["docker", "exec", container_name(h), "bash", "-c", probe],
                                    capture_output=True, text=True, timeout=120)
            text = (result.stdout + result.stderr).strip()
        except (OSError, subprocess.TimeoutExpired) as error:
            text = f"(probe failed: {error})"
        parts.append(f"--- {h.name}:\n{text}")
    return "\n".join(parts)[:limit]
