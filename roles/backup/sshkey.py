"""The SSH key a backed-up host uses to reach its backup target, derived from a stored secret.

Decision (docs/backup.md): the key lives in the secrets store, not only on the host. The
store holds a generated secret `hosts/<host>/backup_ssh_key`; an Ed25519 key is derived
from it, so that:
- the backup target's role knows the public key without reading a fact from another host
  (one deploy converges both sides, in any order, even on the first run);
- a host rebuilt from scratch after a disaster gets the same key, hence its repository
  back, from the store alone;
- the private key file is byte-for-byte stable, so a second deploy changes nothing.

cryptography's OpenSSH serializer puts random check bytes in every file it writes, so the
openssh-key-v1 container (PROTOCOL.key in OpenSSH's sources) is written here, with check
bytes derived from the seed as well.
"""

from __future__ import annotations

import base64
import hashlib
import struct

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

KEY_TYPE = b"ssh-ed25519"
DERIVATION = b"assotic backup ssh key v1\0"


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def seed_of(secret: str) -> bytes:
    return hashlib.sha256(DERIVATION + secret.encode()).digest()


def public_key_line(secret: str, comment: str) -> str:
    """'ssh-ed25519 AAAA... <comment>' for the key derived from `secret`."""
    public = Ed25519PrivateKey.from_private_bytes(seed_of(secret)).public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    blob = _string(KEY_TYPE) + _string(raw)
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} {comment}"


def private_key_text(secret: str, comment: str) -> str:
    """The OpenSSH private key file (unencrypted: it is a 0600 root file) for `secret`."""
    seed = seed_of(secret)
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    public_blob = _string(KEY_TYPE) + _string(raw)
    check = hashlib.sha256(b"check\0" + seed).digest()[:4]
    private = (check + check + _string(KEY_TYPE) + _string(raw) + _string(seed + raw)
               + _string(comment.encode()))
    private += bytes(range(1, 1 + (-len(private) % 8)))  # padding 1, 2, 3... to the block size
    blob = (b"openssh-key-v1\0" + _string(b"none") + _string(b"none") + _string(b"")
            + struct.pack(">I", 1) + _string(public_blob) + _string(private))
    text = base64.b64encode(blob).decode()
    lines = [text[i:i + 70] for i in range(0, len(text), 70)]
    return "-----BEGIN OPENSSH PRIVATE KEY-----\n" + "\n".join(lines) + \
        "\n-----END OPENSSH PRIVATE KEY-----\n"
