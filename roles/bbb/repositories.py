"""The apt repositories bbb-install adds before `apt-get install bigbluebutton`, as data.

Pure: no pyinfra host access. Each BBB version line gets the repositories (and the
packages) upstream's installer sets up for it, read from bigbluebutton/bbb-install
(docs/bbb.md links the exact files and revisions):

- jammy-300 (branch v3.0.x-release, commit 26ce2d1): ppa:rmescandon/yq (yq),
  ppa:bigbluebutton/support (libopusenc0 and friends), ppa:martin-uni-mainz/coturn,
  NodeSource node_18.x, MongoDB 6.0 for jammy, Docker (bbb-libreoffice runs in it), and
  BBB's own repository;
- noble-400 (branch v4.0.x-release): NodeSource node_22.x, Docker and BBB's repository
  only (the PPAs are commented out there; yq comes as bbb-yq-go from BBB's repository).

Every source is rendered as /etc/apt/sources.list.d/<name>.list with
`signed-by=/etc/apt/keyrings/<name>.gpg`: a key trusts only its own repository, never
the whole system (which apt-key and add-apt-repository on jammy did).

A key is fetched once and, where a fingerprint is pinned here, refused unless every
primary key in the download is the pinned one (a long key id, as bbb-install gives for
the PPAs, is matched as the fingerprint's tail: weaker, said so in docs/bbb.md). Keys
with no pin are fetched over HTTPS only: docs/bbb.md lists them as open risks.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from assotic.sip import BBB_VERSIONS, version_line

KEYRINGS = "/etc/apt/keyrings"
SOURCES_DIR = "/etc/apt/sources.list.d"
BBB_REPOSITORY = "https://ubuntu.bigbluebutton.org"
KEY_TIMEOUT_S = 60  # download and every gpg call are bounded: a hung one must not hang a deploy

_PIN_RE = re.compile(r"^(?:[0-9A-F]{40}|[0-9A-F]{16})$")


class KeyRefused(ValueError):
    """A downloaded signing key is not the pinned one."""


@dataclass(frozen=True)
class AptSource:
    name: str  # file names: <name>.list, <name>.gpg
    url: str
    suite: str
    components: str
    key_url: str
    # Uppercase hex: the full fingerprint (40), or the long key id (16) upstream gives;
    # None: no published fingerprint we could read (an open risk, docs/bbb.md).
    key_fingerprint: str | None
    arch: str | None = None

    def __post_init__(self) -> None:
        if self.key_fingerprint is not None and not _PIN_RE.match(self.key_fingerprint):
            raise ValueError(f"{self.name}: a pin is 40 or 16 uppercase hex digits; "
                             f"got {self.key_fingerprint!r}")

    @property
    def keyring(self) -> str:
        return f"{KEYRINGS}/{self.name}.gpg"

    @property
    def list_path(self) -> str:
        return f"{SOURCES_DIR}/{self.name}.list"

    @property
    def line(self) -> str:
        options = ([f"arch={self.arch}"] if self.arch else []) + [f"signed-by={self.keyring}"]
        return f"deb [{' '.join(options)}] {self.url} {self.suite} {self.components}"


def _ppa(name: str, owner_ppa: str, codename: str, key_id: str, pinned: bool) -> AptSource:
    """A Launchpad PPA, as add-apt-repository adds it, its key from Ubuntu's keyserver by id."""
    return AptSource(name=name, url=f"https://ppa.launchpadcontent.net/{owner_ppa}/ubuntu",
                     suite=codename, components="main",
                     key_url=f"https://keyserver.ubuntu.com/pks/lookup?op=get&options=mr&search=0x{key_id}",
                     key_fingerprint=key_id if pinned else None)


# Docker's repository key, as docs.docker.com publishes it (install on Ubuntu).
DOCKER_FINGERPRINT = "9DC858229FC7DD38854AE2D88D81803C0EBFCD88"
# NodeSource's nodesource-repo.gpg.key (the "nodistro" repositories). Not read from
# NodeSource's own page: the value several independent deploys check; docs/bbb.md.
NODESOURCE_FINGERPRINT = "6F71F525282841EEDAF851B42F59B5F99B1BE0B4"
# MongoDB 6.0's server-6.0.asc, as the official Docker image docker-library/mongo pins it.
MONGODB_60_FINGERPRINT = "39BD841E4BE5FB195A65400E6A26B1AE64C3C388"
# Long key ids bbb-install checks with apt-key for its PPAs (v3.0.x-release).
BBB_SUPPORT_PPA_KEY_ID = "2E1B01D0E95B94BC"
COTURN_PPA_KEY_ID = "4B77C2225D3BBDB3"
# ppa:rmescandon/yq: bbb-install gives only the 32-bit id CC86BB64, too short to pin.
YQ_PPA_SHORT_KEY_ID = "CC86BB64"


def _nodesource(major: int) -> AptSource:
    return AptSource(name="nodesource", url=f"https://deb.nodesource.com/node_{major}.x",
                     suite="nodistro", components="main",
                     key_url="https://deb.nodesource.com/gpgkey/nodesource-repo.gpg.key",
                     key_fingerprint=NODESOURCE_FINGERPRINT)


def _docker(codename: str) -> AptSource:
    # bbb-install uses the host's dpkg architecture; BBB itself is amd64 only.
    return AptSource(name="docker", url="https://download.docker.com/linux/ubuntu",
                     suite=codename, components="stable",
                     key_url="https://download.docker.com/linux/ubuntu/gpg",
                     key_fingerprint=DOCKER_FINGERPRINT, arch="amd64")


def _bigbluebutton(version: str, codename: str) -> AptSource:
    # BBB's key: no fingerprint published where we could read it (docs/bbb.md, open risk).
    return AptSource(name="bigbluebutton", url=f"{BBB_REPOSITORY}/{version}",
                     suite=f"bigbluebutton-{codename}", components="main",
                     key_url=f"{BBB_REPOSITORY}/repo/bigbluebutton.asc", key_fingerprint=None)


def apt_sources(version: str) -> list[AptSource]:
    """The repositories bbb-install adds for this version (`jammy-300`, `noble-400-4.0.1`...)."""
    line = version_line(version)
    if line is None:
        raise ValueError(f"not a known BigBlueButton version line: {version!r}")
    codename = BBB_VERSIONS[line]["codename"]
    if line == "jammy-300":
        return [
            _ppa("rmescandon-yq", "rmescandon/yq", codename, YQ_PPA_SHORT_KEY_ID, pinned=False),
            _ppa("bigbluebutton-support", "bigbluebutton/support", codename, BBB_SUPPORT_PPA_KEY_ID,
                 pinned=True),
            _ppa("martin-uni-mainz-coturn", "martin-uni-mainz/coturn", codename, COTURN_PPA_KEY_ID,
                 pinned=True),
            _nodesource(18),
            AptSource(name="mongodb-org-6.0", url="https://repo.mongodb.org/apt/ubuntu",
                      suite=f"{codename}/mongodb-org/6.0", components="multiverse",
                      key_url="https://pgp.mongodb.com/server-6.0.asc",
                      key_fingerprint=MONGODB_60_FINGERPRINT, arch="amd64,arm64"),
            _docker(codename),
            _bigbluebutton(version, codename),
        ]
    if line == "noble-400":
        return [_nodesource(22), _docker(codename), _bigbluebutton(version, codename)]
    raise ValueError(f"no repository list for {line}")  # a new line in BBB_VERSIONS needs one


def upstream_packages(version: str) -> tuple[str, ...]:
    """What bbb-install installs itself, from these repositories, before `bigbluebutton`."""
    line = version_line(version)
    docker = ("docker-ce", "docker-ce-cli", "containerd.io")
    if line == "jammy-300":
        return ("ca-certificates", "yq", "ruby", "openjdk-17-jre", "nodejs", "mongodb-org",
                "apt-transport-https", "haveged", *docker)
    if line == "noble-400":
        return ("ca-certificates", "ruby", "apt-transport-https", "haveged", "openjdk-17-jre",
                "dnsutils", "bbb-yq-go", *docker)
    raise ValueError(f"not a known BigBlueButton version line: {version!r}")


# -- Signing keys ----------------------------------------------------------------------------


def primary_fingerprints(colons: str) -> list[str]:
    """The primary keys' fingerprints in `gpg --show-keys --with-colons` output, in order."""
    fingerprints, after_pub = [], False
    for record in colons.splitlines():
        fields = record.split(":")
        if fields[0] == "pub":
            after_pub = True
        elif fields[0] == "fpr" and after_pub and len(fields) > 9:
            fingerprints.append(fields[9].upper())
            after_pub = False
        elif fields[0] in ("sub", "sec", "ssb"):
            after_pub = False
    return fingerprints


def key_refusal(source: AptSource, colons: str) -> str | None:
    """Why the downloaded key must not be trusted for `source`; None when it may be.

    Refused: no key at all, or (with a pin) any primary key that is not the pinned one,
    so an extra key slipped into the download is refused too.
    """
    found = primary_fingerprints(colons)
    if not found:
        return f"{source.name}: no OpenPGP key in {source.key_url}"
    pin = source.key_fingerprint
    if pin is None:
        return None
    strangers = [f for f in found if not f.endswith(pin)]
    if strangers:
        return (f"{source.name}: {source.key_url} holds {', '.join(strangers)}, "
                f"expected only {pin}")
    return None


def check_key(source: AptSource, colons: str) -> None:
    refusal = key_refusal(source, colons)
    if refusal:
        raise KeyRefused(refusal)


def key_install_command(source: AptSource) -> str:
    """Shell: download the key, refuse it as `key_refusal` does, install it as a binary keyring.

    Runs in a throw-away GnuPG home (nothing reaches root's keyring, no agent stays);
    the keyring appears only once checked, under a temporary name first.
    """
    quote = shlex.quote
    gpg = f"timeout {KEY_TIMEOUT_S} gpg --batch --no-tty --homedir \"$tmp\""
    primaries = ("awk -F: '$1==\"pub\"{p=1;next} p&&$1==\"fpr\"{print $10;p=0} "
                 "$1==\"sub\"{p=0}'")
    lines = [
        "set -e",
        'tmp=$(mktemp -d)',
        'trap \'gpgconf --homedir "$tmp" --kill all 2>/dev/null; rm -rf "$tmp"\' EXIT',
        f'curl -fsSL --max-time {KEY_TIMEOUT_S} -o "$tmp/key" {quote(source.key_url)}',
        f'found=$({gpg} --show-keys --with-colons "$tmp/key" | {primaries})',
        f'test -n "$found" || {{ echo {quote(f"{source.name}: no OpenPGP key in {source.key_url}")} >&2; exit 1; }}',
    ]
    if source.key_fingerprint is not None:
        refused = f"{source.name}: key refused, expected only {source.key_fingerprint}, found:"
        lines.append(f'if printf "%s\\n" "$found" | grep -vqE {quote(source.key_fingerprint + "$")}; '
                     f'then echo {quote(refused)} $found >&2; exit 1; fi')
    lines += [
        f'{gpg} --quiet --import "$tmp/key"',
        f'{gpg} --export $found > "$tmp/keyring"',
        f'install -m 0644 "$tmp/keyring" {quote(source.keyring + ".new")}',
        f'mv -f {quote(source.keyring + ".new")} {quote(source.keyring)}',
    ]
    return "\n".join(lines)
