"""roles/base/hardening.py: the files it renders, checked by the tools that read them."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from roles.base import BaseDataError, BaseSettings, hardening

BOOKWORM = hardening.AptSources(codename="bookworm", mirror=BaseSettings().apt_mirror,
                                security_mirror=BaseSettings().apt_security_mirror)


def apt_uris(tmp_path, sources_text: str) -> list[str]:
    """The index files apt would fetch for these sources: apt's own parser, no network."""
    if shutil.which("apt-get") is None:
        pytest.skip("apt-get is not installed here")
    parts, lists = tmp_path / "sources.list.d", tmp_path / "lists"
    (lists / "partial").mkdir(parents=True)
    parts.mkdir()
    (parts / "debian.sources").write_text(sources_text)
    result = subprocess.run(
        ["apt-get", "-o", "Dir::Etc::SourceList=/dev/null", "-o", f"Dir::Etc::SourceParts={parts}",
         "-o", f"Dir::State::Lists={lists}", "--print-uris", "update"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "W:" not in result.stderr and "E:" not in result.stderr, result.stderr
    return [line.split()[0].strip("'") for line in result.stdout.splitlines()]


def test_apt_reads_the_release_updates_and_security_suites(tmp_path):
    uris = apt_uris(tmp_path, hardening.apt_sources(BOOKWORM))
    assert "http://deb.debian.org/debian/dists/bookworm/InRelease" in uris
    assert "http://deb.debian.org/debian/dists/bookworm-updates/InRelease" in uris
    assert "http://security.debian.org/debian-security/dists/bookworm-security/InRelease" in uris


def test_apt_sources_follow_the_host_release_and_mirrors(tmp_path):
    trixie = hardening.AptSources(codename="trixie", mirror="https://mirror.example.org/debian",
                                  security_mirror="https://mirror.example.org/debian-security")
    uris = apt_uris(tmp_path, hardening.apt_sources(trixie))
    assert "https://mirror.example.org/debian-security/dists/trixie-security/InRelease" in uris
    assert not [u for u in uris if "bookworm" in u or "deb.debian.org" in u]


def test_the_old_sources_list_lists_nothing(tmp_path):
    assert [line for line in hardening.apt_sources_list().splitlines()
            if line.strip() and not line.startswith("#")] == []


def test_bad_mirrors_are_reported_with_their_field():
    with pytest.raises(BaseDataError) as error:
        BaseSettings.from_data({"apt_mirror": "deb.debian.org/debian", "apt_security_mirror": "ftp://x y"})
    assert "apt_mirror: expected an http:// or https:// URL" in str(error.value)
    assert "apt_security_mirror: expected" in str(error.value)


def test_sysctl_file_is_what_sysctl_reads():
    pairs = [tuple(part.strip() for part in line.split("=")) for line in hardening.sysctl_config().splitlines()
             if line and not line.startswith("#")]
    assert pairs == list(hardening.SYSCTLS)
    # Nothing that would stop routing for Docker on a BBB host, or module loading for nftables.
    keys = dict(hardening.SYSCTLS)
    assert "net.ipv4.conf.all.forwarding" not in keys and "kernel.modules_disabled" not in keys


def test_modprobe_blocks_each_module():
    lines = [line for line in hardening.modprobe_config().splitlines() if line and not line.startswith("#")]
    assert lines == [f"install {module} /bin/true" for module in hardening.BLOCKED_MODULES]


def test_lynis_profile_skips_only_what_a_container_cannot_do():
    machine = hardening.lynis_profile(in_container=False)
    container = hardening.lynis_profile(in_container=True)
    assert [line for line in machine.splitlines() if line.startswith("skip-test=")] == [
        f"skip-test={test}" for test, _ in hardening.ALWAYS_LYNIS_SKIPS]
    skipped = [line.removeprefix("skip-test=") for line in container.splitlines() if line.startswith("skip-test=")]
    assert skipped == [test for test, _ in hardening.ALWAYS_LYNIS_SKIPS + hardening.CONTAINER_LYNIS_SKIPS]
    # Each skip is preceded by its reason.
    lines = container.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("skip-test="):
            assert lines[index - 1].startswith("# ") and len(lines[index - 1]) > 20, line


def test_lynis_skips_what_the_profile_says_and_nothing_else(tmp_path):
    """Lynis itself, given the container profile: each listed test is skipped by the profile."""
    if shutil.which("lynis") is None:
        pytest.skip("lynis is not installed here")
    skips = [test for test, _ in hardening.ALWAYS_LYNIS_SKIPS + hardening.CONTAINER_LYNIS_SKIPS]
    profile, log = tmp_path / "custom.prf", tmp_path / "lynis.log"
    profile.write_text(hardening.lynis_profile(in_container=True))
    subprocess.run(["lynis", "audit", "system", "--quick", "--no-colors", "--tests", " ".join(skips),
                    "--profile", str(profile), "--logfile", str(log), "--report-file", str(tmp_path / "r.dat")],
                   capture_output=True, text=True, timeout=300)
    skipped_by_profile = [line.split("Skip tests: ")[1].split() for line in log.read_text().splitlines()
                          if "Skip tests: " in line]
    assert skipped_by_profile == [skips]


def test_audit_rules_parse_as_auditctl_rules():
    rules = [line for line in hardening.static_file("audit-assotic.rules.j2").splitlines()
             if line and not line.startswith("#")]
    assert rules and all(line.startswith("-w /") and " -p wa -k " in line for line in rules)


def test_login_defs_settings_match_a_real_login_defs(tmp_path):
    """The regexp of configure_login_defaults, run by grep as pyinfra's files.line runs it, finds
    the setting or Debian's commented default, never the comment lines about it."""
    login_defs = tmp_path / "login.defs"
    login_defs.write_text("# UMASK is the default umask value for pam_umask\nUMASK\t\t022\n"
                          "#SHA_CRYPT_MIN_ROUNDS 5000\n# SHA_CRYPT_MIN_ROUNDS is read when...\n")
    found = {key: subprocess.run(["grep", "-c", f"^#*{key}[[:space:]]", str(login_defs)],
                                 capture_output=True, text=True).stdout.strip()
             for key in ("UMASK", "SHA_CRYPT_MIN_ROUNDS", "SHA_CRYPT_MAX_ROUNDS")}
    assert found == {"UMASK": "1", "SHA_CRYPT_MIN_ROUNDS": "1", "SHA_CRYPT_MAX_ROUNDS": "0"}


# -- planned against fake facts (tests/unit/fake_facts.py) ----------------------------------

from tests.unit.fake_facts import FakeHost  # noqa: E402

from roles import base  # noqa: E402

BOOKWORM_FACT = {"name": "Debian", "major": 12, "minor": 0, "release_meta": {"VERSION_CODENAME": "bookworm"}}


def fresh_host(distribution=BOOKWORM_FACT, **facts) -> FakeHost:
    """A host as a minimal image leaves it: nothing of assotic's written yet."""
    return FakeHost("web-1", {"web": ["web-1"]}, {}, {
        "LinuxDistribution": distribution, "File": None, "FolderFiles": {}, "ChangedSinceStamp": True,
        "FindInFile": [], "Os": "Linux", "PathStats": {"/etc/ssh/sshd_config": "regular file root root 644"},
        "SystemdStatus": {}, "SystemdEnabled": {}, "Directory": None, "Sha1File": None, "Md5File": None, "Sha256File": None,
        **facts})


def names(ops) -> list[str]:
    return [op.name for op in ops]


def test_a_fresh_debian_host_gets_the_security_suite_before_anything_is_installed():
    ops = fresh_host().plan(base.configure_apt_sources, BaseSettings(), BOOKWORM_FACT)
    assert names(ops) == [
        f"Keep the original {hardening.APT_SOURCES_LIST} as {hardening.APT_SOURCES_LIST_BEFORE}",
        f"Render {hardening.APT_SOURCES}", f"Render {hardening.APT_SOURCES_LIST}",
        "Refresh apt's package lists"]
    assert ops[-1].commands[0].startswith("apt-get update -q && ")


def test_the_original_sources_list_is_kept_once():
    ops = fresh_host(File={"mode": 644}).plan(base.configure_apt_sources, BaseSettings(), BOOKWORM_FACT)
    assert not [name for name in names(ops) if name.startswith("Keep the original")]


def test_an_ubuntu_host_keeps_its_own_sources():
    ubuntu = {"name": "Ubuntu", "major": 22, "minor": 4, "release_meta": {"VERSION_CODENAME": "jammy"}}
    assert fresh_host(distribution=ubuntu).plan(base.configure_apt_sources, BaseSettings(), ubuntu) == []


def test_in_a_container_sysctls_are_written_not_applied_and_auditd_is_not_installed():
    ops = names(fresh_host().plan(hardening.harden, in_container=True))
    assert f"Render {hardening.SYSCTL_DROP_IN}" in ops
    assert not [op for op in ops if op.startswith("Apply ") or "audit rules" in op]
    assert "auditd" not in hardening.packages(in_container=True)


def test_on_a_machine_sysctls_are_applied_and_auditd_loads_its_rules():
    ops = fresh_host().plan(hardening.harden, in_container=False)
    by_name = {op.name: op for op in ops}
    assert by_name[f"Apply {hardening.SYSCTL_DROP_IN}"].commands[0].startswith(
        f"sysctl -q -p {hardening.SYSCTL_DROP_IN} && ")
    assert by_name["Load the audit rules"].commands[0].startswith("augenrules --load && ")
    assert "auditd" in hardening.packages(in_container=False)


def test_only_files_that_exist_are_restricted_and_cron_folders_are_root_only():
    ops = names(fresh_host().plan(hardening.harden, in_container=True))
    assert "Set mode 0600 on /etc/ssh/sshd_config" in ops
    assert "Set mode 0600 on /etc/crontab" not in ops  # no cron here: cron's own file comes with it
    assert [op for op in ops if op.startswith("Set mode 0700 on /etc/cron.")] == [
        f"Set mode 0700 on {path}" for path in hardening.ROOT_ONLY_FOLDERS]


def test_pending_security_updates_are_installed_once_after_the_sources_appear():
    fresh = fresh_host().plan(hardening.install_pending_security_updates)
    assert [op.commands[0].split(" && ")[0] for op in fresh] == ["unattended-upgrade"]
    # Stamp written and sources unchanged since: nothing to do (the daily timer does the rest).
    assert fresh_host(ChangedSinceStamp=False).plan(hardening.install_pending_security_updates)[0].global_arguments[
        "_if"]() is False


def test_a_dpkg_run_cut_short_is_finished_before_the_first_install():
    restricted = {"/usr/bin/x86_64-linux-gnu-as": hardening.ROOT_ONLY_TOOLS_OVERRIDE}
    ops = fresh_host(DpkgInterrupted=True, DebPackages={}, AptSources=[], Date=None, DebArch="amd64",
                     StatOverrides=restricted).plan(base.install_packages, BaseSettings(), in_container=True)
    assert names(ops)[:2] == ["Finish the dpkg run a killed deploy left half done", "Install base packages"]
    assert ops[0].commands == ["dpkg --configure -a"]
    clean = fresh_host(DpkgInterrupted=False, DebPackages={}, AptSources=[], Date=None, DebArch="amd64",
                       StatOverrides=restricted).plan(base.install_packages, BaseSettings(), in_container=True)
    assert names(clean) == ["Install base packages"]


def test_the_assembler_is_made_root_only_before_binutils_is_installed():
    ops = fresh_host(DebArch="amd64", StatOverrides={}).plan(hardening.restrict_assembler)
    assert [op.commands[-1] for op in ops] == [
        "dpkg-statoverride --update --add root root 0750 /usr/bin/x86_64-linux-gnu-as"]
    assert fresh_host(DebArch="riscv64", StatOverrides={}).plan(hardening.restrict_assembler) == []


def test_stat_overrides_are_read_from_dpkg_statoverride():
    from roles.base.facts import StatOverrides

    fact = StatOverrides()
    listed = subprocess.run(["sh", "-c", fact.command()], capture_output=True, text=True).stdout.splitlines()
    assert fact.process(["root root 750 /usr/bin/x86_64-linux-gnu-as", "garbage"]) == {
        "/usr/bin/x86_64-linux-gnu-as": "root root 0750"}
    assert all(path.startswith("/") for path in fact.process(listed))


def test_login_shell_profile_sets_a_readonly_timeout(tmp_path):
    profile = tmp_path / "assotic.sh"
    profile.write_text(hardening.shell_profile())
    seen = subprocess.run(["bash", "-c", f". {profile}; echo $TMOUT; ulimit -Sc; unset TMOUT 2>/dev/null || echo kept"],
                          capture_output=True, text=True, timeout=30)
    assert seen.stdout.split() == [str(hardening.IDLE_SHELL_TIMEOUT), "0", "kept"]
