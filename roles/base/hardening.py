"""roles/base, the operating system's own hardening: what Lynis measures (`make audit`).

Each measure and its reason is listed in docs/base.md. Pure functions render the files;
`harden()` puts them on the host. Nothing here is needed by an application: every
setting was chosen so that nginx, PHP-FPM, PostgreSQL, Redis, Mattermost, coturn and
restic keep working (the lab tests prove it).
"""

from __future__ import annotations

from dataclasses import dataclass

from pyinfra import host
from pyinfra.facts.deb import DebArch
from pyinfra.facts.files import File
from pyinfra.operations import files, server, systemd

from assotic.templating import render
from roles.remote_files import PathStats, put_text, reload_after

from .facts import StatOverrides

APT_SOURCES = "/etc/apt/sources.list.d/debian.sources"
APT_SOURCES_LIST = "/etc/apt/sources.list"
# The one-line sources.list of a minimal image (or a provider's), kept once for reference.
APT_SOURCES_LIST_BEFORE = "/etc/apt/sources.list.before-assotic"
LOGIN_DEFS = "/etc/login.defs"
LIMITS_DROP_IN = "/etc/security/limits.d/assotic.conf"
COREDUMP_DROP_IN = "/etc/systemd/coredump.conf.d/assotic.conf"
SYSCTL_DROP_IN = "/etc/sysctl.d/90-assotic.conf"
MODPROBE_DROP_IN = "/etc/modprobe.d/assotic.conf"
NEEDRESTART_DROP_IN = "/etc/needrestart/conf.d/assotic.conf"
BANNER_FILES = ("/etc/issue", "/etc/issue.net")
SHELL_PROFILE = "/etc/profile.d/assotic.sh"
# Seconds an interactive login shell may sit idle (TMOUT).
IDLE_SHELL_TIMEOUT = 900
# Read by Lynis after its default.prf, whatever the command line (lynis(8), "profiles").
LYNIS_PROFILE = "/etc/lynis/custom.prf"
AUDIT_RULES = "/etc/audit/rules.d/assotic.rules"

HARDENING_PACKAGES = [
    "lynis",  # `make audit` runs it here
    "libpam-tmpdir",  # a private TMPDIR per login (/tmp/user/<uid>), not the shared /tmp
    "debsums",  # `debsums -c`: files of installed packages changed on disk
    "needrestart",  # which services still run a library an upgrade replaced
    "apt-show-versions",  # `apt-show-versions -u`: what is upgradable, and from which suite
    "libpam-pwquality",  # a password set by hand (none is, by assotic) must be a strong one
    "sysstat",  # `sar`: CPU, memory and disk history, to see what a slow night was
]
# auditd records logins, sudo and changes to the files below in its own log. About 2 MiB
# of memory. The audit subsystem is the kernel's and not namespaced: it cannot run in a
# container (LAB.md), so it is installed on machines only.
AUDIT_PACKAGES = ["auditd"]

# login.defs: new accounts' home folders 0750 (HOME_MODE follows UMASK) and SHA512 rounds
# for the tools that hash with ENCRYPT_METHOD (chpasswd, newusers). assotic's accounts
# have no password at all; sysadmins log in with keys.
LOGIN_DEFS_SETTINGS = (
    ("UMASK", "027"),
    ("SHA_CRYPT_MIN_ROUNDS", "5000"),
    ("SHA_CRYPT_MAX_ROUNDS", "100000"),
)

# Safe for these services: no routing (net.ipv4.conf.all.forwarding is left alone: the
# kernel default is already 0, and Docker on a BBB host needs it), no source routes or
# redirects, strict reverse-path filtering (one interface per host), no unprivileged
# eBPF, perf or kernel pointers, no core dumps of setuid programs.
SYSCTLS = (
    ("fs.protected_fifos", "2"),
    ("fs.protected_hardlinks", "1"),
    ("fs.protected_regular", "2"),
    ("fs.protected_symlinks", "1"),
    ("fs.suid_dumpable", "0"),
    ("kernel.core_uses_pid", "1"),
    ("kernel.ctrl-alt-del", "0"),
    ("kernel.dmesg_restrict", "1"),
    ("kernel.kptr_restrict", "2"),
    ("kernel.perf_event_paranoid", "3"),
    ("kernel.randomize_va_space", "2"),
    ("kernel.sysrq", "0"),
    ("kernel.unprivileged_bpf_disabled", "1"),
    ("kernel.yama.ptrace_scope", "1"),
    ("net.core.bpf_jit_harden", "2"),
    ("dev.tty.ldisc_autoload", "0"),
    ("net.ipv4.conf.all.accept_redirects", "0"),
    ("net.ipv4.conf.all.accept_source_route", "0"),
    ("net.ipv4.conf.all.bootp_relay", "0"),
    ("net.ipv4.conf.all.log_martians", "1"),
    ("net.ipv4.conf.all.mc_forwarding", "0"),
    ("net.ipv4.conf.all.proxy_arp", "0"),
    ("net.ipv4.conf.all.rp_filter", "1"),
    ("net.ipv4.conf.all.send_redirects", "0"),
    ("net.ipv4.conf.default.accept_redirects", "0"),
    ("net.ipv4.conf.default.accept_source_route", "0"),
    ("net.ipv4.conf.default.log_martians", "1"),
    ("net.ipv4.icmp_echo_ignore_broadcasts", "1"),
    ("net.ipv4.icmp_ignore_bogus_error_responses", "1"),
    ("net.ipv4.tcp_syncookies", "1"),
    ("net.ipv6.conf.all.accept_redirects", "0"),
    ("net.ipv6.conf.all.accept_source_route", "0"),
    ("net.ipv6.conf.default.accept_redirects", "0"),
    ("net.ipv6.conf.default.accept_source_route", "0"),
)
# Only root reads sshd's main config and cron's jobs, which run as root (CIS, Lynis FILE-7524).
# The folders are made when missing (packages installed later drop their jobs in them); a
# file is only restricted when there: an empty /etc/crontab made here would stay in place of
# cron's own when cron is installed later.
ROOT_ONLY_FILES = ("/etc/ssh/sshd_config", "/etc/crontab")
ROOT_ONLY_FOLDERS = ("/etc/cron.d", "/etc/cron.daily", "/etc/cron.hourly", "/etc/cron.weekly",
                     "/etc/cron.monthly")
SYSSTAT_DEFAULTS = "/etc/default/sysstat"
# needrestart depends on binutils, which brings an assembler: root's only (Lynis HRDN-7222), so
# that an account taken over (www-data, an association's user) cannot build a local exploit.
# Set with dpkg-statoverride, which dpkg applies when it installs or upgrades the file, so an
# update of binutils keeps it; registered before the first install.
ASSEMBLER_TRIPLETS = {"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}
ROOT_ONLY_TOOLS_OVERRIDE = "root root 0750"
BLOCKED_MODULES = ("usb-storage", "firewire-core", "dccp", "sctp", "rds", "tipc")

# Lynis tests that cannot apply on the host, each with its reason (templates/base/lynis-custom.prf.j2),
# never one that only raises the score. docs/base.md repeats them.
ALWAYS_LYNIS_SKIPS = (
    ("FILE-6310", "partitions are the provider's: a rented server comes with one root filesystem"),
)
# Only in containers: on a machine these run.
CONTAINER_LYNIS_SKIPS = (
    ("KRNL-6000", "sysctls are the container host's kernel: /proc/sys is read-only in a container"),
    ("ACCT-9628", "auditd cannot run in a container: the kernel's audit subsystem is not namespaced"),
    ("BOOT-5122", "a container has no boot loader"),
    ("KRNL-5788", "a container has no kernel of its own (no /boot/vmlinuz)"),
    ("KRNL-5830", "a container has no kernel of its own: a reboot does not change it"),
    ("USB-3000", "a container has no USB bus (no /sys/bus/usb): USBGuard would guard nothing"),
)


@dataclass(frozen=True)
class AptSources:
    """What templates/base/debian.sources.j2 sees as `apt`."""

    codename: str
    mirror: str
    security_mirror: str
    components: tuple[str, ...] = ("main",)


@dataclass(frozen=True)
class HardeningContext:
    """What the other hardening templates see as `base`."""

    sysctls: tuple[tuple[str, str], ...] = SYSCTLS
    blocked_modules: tuple[str, ...] = BLOCKED_MODULES
    lynis_skips: tuple[tuple[str, str], ...] = ()
    idle_shell_timeout: int = IDLE_SHELL_TIMEOUT


def apt_sources(sources: AptSources) -> str:
    """/etc/apt/sources.list.d/debian.sources: the release, -updates and -security, deb822."""
    return render("base/debian.sources.j2", apt=sources)


def apt_sources_list() -> str:
    """/etc/apt/sources.list, comments only once debian.sources holds the suites."""
    return render("base/sources.list.j2")


def sysctl_config() -> str:
    return render("base/sysctl-assotic.conf.j2", base=HardeningContext())


def modprobe_config() -> str:
    return render("base/modprobe-assotic.conf.j2", base=HardeningContext())


def shell_profile() -> str:
    return render("base/profile-assotic.sh.j2", base=HardeningContext())


def lynis_profile(in_container: bool) -> str:
    """/etc/lynis/custom.prf: the tests skipped here, each with its reason."""
    skips = ALWAYS_LYNIS_SKIPS + (CONTAINER_LYNIS_SKIPS if in_container else ())
    return render("base/lynis-custom.prf.j2", base=HardeningContext(lynis_skips=skips))


def static_file(template: str) -> str:
    """A hardening file without variables (banner, limits, coredump, needrestart, audit rules)."""
    return render(f"base/{template}")


def packages(in_container: bool) -> list[str]:
    """Installed with the base packages, in the same apt run."""
    return HARDENING_PACKAGES + ([] if in_container else AUDIT_PACKAGES)


def harden(in_container: bool) -> None:
    """Every measure but the apt sources (roles/base runs those before its first install)."""
    configure_login_defaults()
    restrict_root_files()
    configure_sysstat()
    configure_core_dumps()
    put_text(SHELL_PROFILE, shell_profile())
    configure_kernel(in_container)
    for path in BANNER_FILES:
        put_text(path, static_file("issue.j2"))
    put_text(NEEDRESTART_DROP_IN, static_file("needrestart-assotic.conf.j2"))
    put_text(LYNIS_PROFILE, lynis_profile(in_container), mode="0640")
    if not in_container:
        configure_auditd()


def configure_apt_sources(sources: AptSources) -> None:
    """Debian's suites, security included, in deb822 form; apt's lists refreshed after a change.

    Runs before any package is installed, so the first install already sees the security suite.
    """
    if host.get_fact(File, path=APT_SOURCES_LIST_BEFORE) is None:
        server.shell(name=f"Keep the original {APT_SOURCES_LIST} as {APT_SOURCES_LIST_BEFORE}",
                     commands=[f"if [ -e {APT_SOURCES_LIST} ]; then cp -p {APT_SOURCES_LIST} "
                               f"{APT_SOURCES_LIST_BEFORE}; else : > {APT_SOURCES_LIST_BEFORE}; fi"])
    changed = [put_text(APT_SOURCES, apt_sources(sources)), put_text(APT_SOURCES_LIST, apt_sources_list())]
    reload_after("Refresh apt's package lists", "apt-get update -q", changed, stamp="apt-sources",
                 covers=[APT_SOURCES, APT_SOURCES_LIST])


def restrict_assembler() -> None:
    """Before the packages are installed (then dpkg applies it as it unpacks binutils)."""
    triplet = ASSEMBLER_TRIPLETS.get(host.get_fact(DebArch))
    if triplet is None:
        host.noop("assembler left as is: unknown architecture")
        return
    assembler = f"/usr/bin/{triplet}-as"
    if host.get_fact(StatOverrides).get(assembler) != ROOT_ONLY_TOOLS_OVERRIDE:
        server.shell(name=f"Restrict {assembler} to root (dpkg-statoverride {ROOT_ONLY_TOOLS_OVERRIDE})",
                     commands=[f"dpkg-statoverride --remove {assembler} 2>/dev/null || true",
                               f"dpkg-statoverride --update --add {ROOT_ONLY_TOOLS_OVERRIDE} {assembler}"])


def install_pending_security_updates() -> None:
    """What the image missed since it was built, installed once when the security suite first
    appears (again if its sources change); then unattended-upgrades' daily timer takes over.
    Before any application is installed, so none listens on an unpatched library."""
    reload_after("Install pending security updates (unattended-upgrade; minutes on a new host)",
                 "unattended-upgrade", [], stamp="security-updates", covers=[APT_SOURCES])


def configure_login_defaults() -> None:
    for key, value in LOGIN_DEFS_SETTINGS:
        files.line(name=f"Set {key} {value} in {LOGIN_DEFS}", path=LOGIN_DEFS,
                   # The setting itself, or Debian's commented default (#SHA_CRYPT_MIN_ROUNDS
                   # 5000); not the comment lines that merely mention it.
                   line=rf"^#*{key}[[:space:]]", replace=f"{key}\t\t{value}")


def restrict_root_files() -> None:
    states = host.get_fact(PathStats, paths=ROOT_ONLY_FILES)
    for path in ROOT_ONLY_FILES:
        if path in states and states[path].split()[-1] != "600":
            files.file(name=f"Set mode 0600 on {path}", path=path, mode="0600")
    for path in ROOT_ONLY_FOLDERS:
        files.directory(name=f"Set mode 0700 on {path}", path=path, mode="0700", user="root", group="root")


def configure_sysstat() -> None:
    """sysstat collects every 10 minutes once enabled (Debian ships it disabled)."""
    enabled = files.line(name=f"Enable sysstat in {SYSSTAT_DEFAULTS}", path=SYSSTAT_DEFAULTS,
                         line=r"^ENABLED=", replace='ENABLED="true"')
    systemd.service(name="Enable and start sysstat", service="sysstat", running=True, enabled=True)
    reload_after("Restart sysstat", "systemctl restart sysstat", [enabled], stamp="sysstat",
                 covers=[SYSSTAT_DEFAULTS])


def configure_core_dumps() -> None:
    put_text(LIMITS_DROP_IN, static_file("limits-assotic.conf.j2"))
    put_text(COREDUMP_DROP_IN, static_file("coredump-assotic.conf.j2"))


def configure_kernel(in_container: bool) -> None:
    """Sysctls and blocked modules: written everywhere, applied where the kernel is ours."""
    put_text(MODPROBE_DROP_IN, modprobe_config())
    sysctl = put_text(SYSCTL_DROP_IN, sysctl_config())
    if in_container:
        host.noop(f"{SYSCTL_DROP_IN} not applied: the kernel is the container host's")
        return
    reload_after(f"Apply {SYSCTL_DROP_IN}", f"sysctl -q -p {SYSCTL_DROP_IN}", [sysctl], stamp="sysctl",
                 covers=[SYSCTL_DROP_IN])


def configure_auditd() -> None:
    rules = put_text(AUDIT_RULES, static_file("audit-assotic.rules.j2"), mode="0640")
    # augenrules merges rules.d/ into audit.rules and loads it (auditd's own way).
    reload_after("Load the audit rules", "augenrules --load", [rules], stamp="auditd", covers=[AUDIT_RULES])
