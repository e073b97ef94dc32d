"""A root shell on a lab host, for the lab tests that make or inspect data by hand."""

from __future__ import annotations

import subprocess

from lab.harness import LAB_HOSTS, container_name


def sh(host: str, script: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run `script` with bash on lab host `host` (docker exec), printed for the test's log.

    umask 027, as every assotic service writes: data a test makes by hand must not be
    world-readable, or the next deploy rightly repairs it (and is no longer a no-op).
    """
    name = container_name(next(h for h in LAB_HOSTS if h.name == host))
    result = subprocess.run(["docker", "exec", "-i", name, "bash", "-euo", "pipefail", "-s"],
                            input=f"umask 027\n{script}", capture_output=True, text=True)
    print(f"[{host}] $ {script.strip()[:300]}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    if check:
        assert result.returncode == 0, f"{host}: exit {result.returncode}: {result.stderr[-2000:]}"
    return result
