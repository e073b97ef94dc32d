"""The lab's mail relay: a real authenticated submission server, as a production relay is.

One lab-only container (not an inventory host: nothing is deployed to it) runs Debian's
Postfix on the submission port, STARTTLS required, SASL logins checked by Dovecot, and
delivers every recipient into one Maildir that the lab tests read (docs/mail.md). The lab
hosts' null clients relay through it exactly as through a provider's relay:

- its name, RELAY_NAME, is in every lab host's /etc/hosts (docker extra_hosts), at a fixed
  address on the lab's own mail network (so a host made before a relay restart still finds it);
- its certificate is signed by a lab CA made here once (.lab*/relay/), which the hosts trust
  through data `mail_relay_ca` (group_data/lab.py);
- its password is the lab store's `mail/relay_password`, made here once; the relay keeps only
  a salted hash of it.

Nothing it receives leaves it: `virtual_alias_maps = static:labmail` turns every recipient
into the local mailbox labmail (the original recipient is kept in X-Original-To).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import io
import json
import os
import secrets
import socket
import tarfile
import time
from pathlib import Path

from assotic.layout import MAIL_RELAY_SECRET
from lab.harness import (CONTAINER_PREFIX, LAB_DIR, LAB_SLOT, SECRETS_KEY, SECRETS_STORE,
                         LabError, docker_client, image_tag, reusable, reuse_refusal, say,
                         system_state, systemd_container_kwargs)

RELAY_NAME = "relay.lab.example.org"
RELAY_PORT = 587
RELAY_LOGIN = "lab-relay"
MAILBOX_USER = "labmail"
MAILDIR = f"/home/{MAILBOX_USER}/Maildir"
# Who receives the lab hosts' own mail (data mail_admin, inventory/lab.py): backup alerts.
LAB_MAIL_ADMIN = "equipe-technique@lab.example.org"
RELAY_CONTAINER = f"{CONTAINER_PREFIX}relay"
RELAY_SUITE = "bookworm"
# A network of its own, so the relay keeps one address whatever starts first: Docker's default
# bridge gives no fixed addresses, and the hosts' /etc/hosts is written when they are made.
MAIL_NETWORK = f"{CONTAINER_PREFIX}mail"
MAIL_SUBNET = f"10.254.{LAB_SLOT}.0/24"
RELAY_ADDRESS = f"10.254.{LAB_SLOT}.25"
RELAY_DIR = LAB_DIR / "relay"
CA_FILE = RELAY_DIR / "ca.pem"
CERT_FILE = RELAY_DIR / "relay.pem"
KEY_FILE = RELAY_DIR / "relay.key"
# Written in the relay once Postfix and Dovecot are installed and configured.
PREPARED_MARKER = "/etc/assotic-lab-relay-prepared"
# Where the provisioning files land in the container (then moved into place by the script).
INCOMING = "/root/assotic-relay"
READY_TIMEOUT = 300  # the first start installs Postfix and Dovecot from Debian's archive


def extra_hosts() -> dict[str, str]:
    """docker extra_hosts of every lab host: the relay's name at its fixed address."""
    return {RELAY_NAME: RELAY_ADDRESS}


def relay_data() -> dict | None:
    """Data `mail_relay` of the lab (group_data/lab.py), or None before `lab up` made the CA."""
    if not CA_FILE.exists():
        return None
    return {"host": RELAY_NAME, "port": RELAY_PORT, "tls": "starttls", "login": RELAY_LOGIN,
            "spf": f"ip4:{RELAY_ADDRESS}"}


def relay_ca() -> str | None:
    """The lab CA's certificate (PEM) for data `mail_relay_ca`, or None before `lab up`."""
    return CA_FILE.read_text() if CA_FILE.exists() else None


# --- The CA, the relay's certificate and its password ------------------------------------


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def ensure_certificates() -> None:
    """A lab CA and the relay's certificate for RELAY_NAME, made once (valid 5 years)."""
    if CA_FILE.exists() and CERT_FILE.exists() and KEY_FILE.exists():
        return
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    RELAY_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    later = now + datetime.timedelta(days=5 * 365)

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("assotic lab mail CA"))
          .issuer_name(name("assotic lab mail CA")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(later)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, key_cert_sign=True, crl_sign=True,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(name(RELAY_NAME)).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(later)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(RELAY_NAME)]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    # The CA's key is not kept: nothing else is ever signed with it.
    _write_private(KEY_FILE, key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    CERT_FILE.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    CA_FILE.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    say(f"lab mail CA and relay certificate made: {RELAY_DIR}")


def ensure_relay_password() -> str:
    """The relay's password: the lab store's MAIL_RELAY_SECRET, set once as an operator would.
    The store inventory/lab.py deploys with: $ASSOTIC_SECRETS_FILE and _KEY when set (the
    drill's copy, commands/drill.py), else the slot's own."""
    from assotic.secrets_store import SecretStore

    store = SecretStore.open(os.environ.get("ASSOTIC_SECRETS_FILE", str(SECRETS_STORE)),
                             os.environ.get("ASSOTIC_SECRETS_KEY", str(SECRETS_KEY)))
    if MAIL_RELAY_SECRET not in store:
        store.set(MAIL_RELAY_SECRET, secrets.token_urlsafe(24), origin="operator")
        store.save()
        say(f"lab relay password set in the lab store ({MAIL_RELAY_SECRET})")
    return store.get(MAIL_RELAY_SECRET)


def dovecot_password_line(login: str, password: str, salt: bytes | None = None) -> str:
    """A passwd-file line with Dovecot's salted SHA-512 ({SSHA512}: base64 of
    sha512(password + salt) followed by the salt): the relay never holds the password itself."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.sha512(password.encode() + salt).digest()
    return f"{login}:{{SSHA512}}{base64.b64encode(digest + salt).decode()}\n"


# --- The relay's configuration -----------------------------------------------------------

DOVECOT_CONF = """# assotic lab relay: Dovecot only checks the relay's SASL logins for Postfix.
protocols =
auth_mechanisms = plain login
passdb {
  driver = passwd-file
  args = scheme=SSHA512 /etc/dovecot/assotic-relay.passwd
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}
service auth {
  unix_listener /var/spool/postfix/private/auth {
    mode = 0660
    user = postfix
    group = postfix
  }
}
"""

POSTFIX_SETTINGS = {
    "myhostname": RELAY_NAME,
    "mydestination": f"{RELAY_NAME}, localhost",
    "mynetworks": "127.0.0.0/8",
    "inet_interfaces": "all",
    "inet_protocols": "ipv4",
    "home_mailbox": "Maildir/",
    # Every recipient, of any domain, into the one lab mailbox: nothing leaves the lab.
    "virtual_alias_maps": f"static:{MAILBOX_USER}",
    # ...without making every domain a virtual alias domain (it is in mydestination), and with
    # no alias file: the mailbox user is the only local recipient.
    "virtual_alias_domains": "",
    "alias_maps": "",
    "alias_database": "",
    "smtpd_tls_cert_file": "/etc/postfix/assotic-relay.pem",
    "smtpd_tls_key_file": "/etc/postfix/assotic-relay.key",
    "smtpd_sasl_type": "dovecot",
    "smtpd_sasl_path": "private/auth",
    "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
    # The Received header says how each mail came in (TLS version, login): the tests read it.
    "smtpd_tls_received_header": "yes",
    "smtpd_sasl_authenticated_header": "yes",
}
# The submission port as a provider's: STARTTLS before anything, a login before any mail.
SUBMISSION = "submission inet n - y - - smtpd"
SUBMISSION_OPTIONS = {
    "smtpd_tls_security_level": "encrypt",
    "smtpd_sasl_auth_enable": "yes",
    "smtpd_tls_auth_only": "yes",
    "smtpd_relay_restrictions": "permit_sasl_authenticated,reject",
}


def provision_script() -> str:
    """Shell run in the relay on every `lab up` (the packages once): idempotent."""
    settings = " ".join(f"'{k} = {v}'" for k, v in POSTFIX_SETTINGS.items())
    options = "\n".join(f"postconf -P 'submission/inet/{k}={v}'" for k, v in SUBMISSION_OPTIONS.items())
    return f"""set -e
export DEBIAN_FRONTEND=noninteractive
if ! dpkg-query -W -f '${{Status}}' postfix dovecot-core 2>/dev/null | grep -q 'ok installed.*ok installed'; then
    echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends postfix dovecot-core >/dev/null
fi
[ -e /etc/postfix/main.cf ] || cp /usr/share/postfix/main.cf.debian /etc/postfix/main.cf
id {MAILBOX_USER} >/dev/null 2>&1 || useradd --create-home --shell /usr/sbin/nologin {MAILBOX_USER}
install -m 0644 {INCOMING}/relay.pem /etc/postfix/assotic-relay.pem
install -m 0600 {INCOMING}/relay.key /etc/postfix/assotic-relay.key
install -m 0640 -g dovecot {INCOMING}/passwd /etc/dovecot/assotic-relay.passwd
install -m 0644 {INCOMING}/dovecot.conf /etc/dovecot/local.conf
rm -rf {INCOMING}
postconf -e {settings}
postconf -M 'submission/inet={SUBMISSION}'
{options}
postfix check
systemctl enable --quiet postfix dovecot
systemctl restart dovecot postfix
touch {PREPARED_MARKER}
"""


def _archive(files: dict[str, tuple[bytes, int]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(f"{INCOMING.lstrip('/')}/{name}")
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# --- The container -----------------------------------------------------------------------


def ensure_network(client):
    import docker

    try:
        return client.networks.get(MAIL_NETWORK)
    except docker.errors.NotFound:
        pool = docker.types.IPAMPool(subnet=MAIL_SUBNET)
        say(f"creating the lab mail network {MAIL_NETWORK} ({MAIL_SUBNET})")
        return client.networks.create(MAIL_NETWORK, driver="bridge",
                                      ipam=docker.types.IPAMConfig(pool_configs=[pool]),
                                      labels={"assotic.lab": "1"})


def connect(network, container) -> None:
    """Put a lab host on the mail network (once: it stays there across restarts)."""
    container.reload()
    if MAIL_NETWORK not in container.attrs["NetworkSettings"]["Networks"]:
        network.connect(container)


def get_relay(client):
    import docker

    try:
        return client.containers.get(RELAY_CONTAINER)
    except docker.errors.NotFound:
        return None


def start_relay(client, key_id: str) -> None:
    """Start (or reuse) the relay and provision it; wait until its submission port greets."""
    ensure_certificates()
    password = ensure_relay_password()
    network = ensure_network(client)
    container = get_relay(client)
    container = reusable(container, container and reuse_refusal(container.labels, key_id))
    if container is None:
        say(f"starting the lab mail relay {RELAY_NAME} at {RELAY_ADDRESS}:{RELAY_PORT}")
        container = client.containers.create(
            **systemd_container_kwargs(RELAY_CONTAINER, "relay", image_tag(RELAY_SUITE), key_id))
        network.connect(container, ipv4_address=RELAY_ADDRESS)
        container.start()
    elif container.status != "running":
        say(f"starting the stopped lab mail relay {RELAY_CONTAINER}")
        container.start()
    else:
        say(f"reusing the running lab mail relay {RELAY_CONTAINER}")
    _wait_for_systemd(container)
    files = {"relay.pem": (CERT_FILE.read_bytes(), 0o644), "relay.key": (KEY_FILE.read_bytes(), 0o600),
             "passwd": (dovecot_password_line(RELAY_LOGIN, password).encode(), 0o600),
             "dovecot.conf": (DOVECOT_CONF.encode(), 0o644)}
    container.exec_run(["install", "-d", "-m", "0700", INCOMING])
    if not container.put_archive("/", _archive(files)):
        raise LabError(f"{RELAY_CONTAINER}: could not copy the relay's files in")
    say("provisioning the lab mail relay (Postfix and Dovecot from Debian's archive, once)")
    code, output = container.exec_run(["bash", "-c", provision_script()])
    if code != 0:
        raise LabError(f"{RELAY_CONTAINER}: provisioning failed:\n{output.decode(errors='replace')[-2000:]}")
    wait_for_submission()
    say(f"the lab mail relay answers on {RELAY_ADDRESS}:{RELAY_PORT}")


def _wait_for_systemd(container, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    state = "unknown"
    while time.monotonic() < deadline:
        state = system_state(container)
        if state in ("running", "degraded"):
            return
        time.sleep(0.5)
    raise LabError(f"{RELAY_CONTAINER}: systemd not ready after {timeout:.0f}s ({state})")


def submission_answers() -> bool:
    """True when the relay's Postfix greets on the submission port (from this machine)."""
    try:
        with socket.create_connection((RELAY_ADDRESS, RELAY_PORT), timeout=2) as s:
            s.settimeout(2)
            return s.recv(4).startswith(b"220")
    except OSError:
        return False


def wait_for_submission(timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if submission_answers():
            return
        time.sleep(0.5)
    raise LabError(f"{RELAY_CONTAINER}: nothing answers on {RELAY_ADDRESS}:{RELAY_PORT} after {timeout:.0f}s")


def remove_relay(client) -> None:
    import docker

    container = get_relay(client)
    if container is None:
        say("relay: no container")
    else:
        container.remove(force=True)
        say("relay: removed")
    try:
        client.networks.get(MAIL_NETWORK).remove()
        say(f"{MAIL_NETWORK}: removed")
    except docker.errors.NotFound:
        pass


# --- What the tests read -----------------------------------------------------------------

MAILBOX_SCRIPT = f"""import json, pathlib
d = pathlib.Path("{MAILDIR}")
print(json.dumps({{p.name: p.read_text(errors="replace")
                  for sub in ("new", "cur") for p in sorted((d / sub).glob("*"))}}))
"""


def mailbox(client=None) -> dict[str, str]:
    """Every mail the relay delivered: Maildir file name -> the whole mail as received."""
    container = get_relay(client or docker_client(start=False))
    if container is None:
        raise LabError(f"no lab mail relay {RELAY_CONTAINER} (run: python -m lab up)")
    code, output = container.exec_run(["python3", "-c", MAILBOX_SCRIPT])
    if code != 0:
        raise LabError(f"{RELAY_CONTAINER}: reading the mailbox failed: {output.decode(errors='replace')}")
    return json.loads(output.decode())


def wait_for_mail(wanted, skip=(), timeout: float = 60):
    """The first delivered mail (an email.message.EmailMessage) for which `wanted(mail)` is
    true, not counting the Maildir files in `skip`; waits at most `timeout` seconds."""
    import email
    import email.policy

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, raw in mailbox().items():
            if name in skip:
                continue
            mail = email.message_from_string(raw, policy=email.policy.default)
            if wanted(mail):
                return mail
        time.sleep(1)
    raise LabError(f"no such mail reached the lab relay within {timeout:.0f}s")
