#!/usr/bin/env bash
# Nightly CI: write the secrets key and the SSH key from masked CI variables into 0600 files.
#
# The variables hold the files base64-encoded on one line (masked variables must be one line):
#   ASSOTIC_SECRETS_KEY_B64   base64 -w0 ~/.config/assotic/secrets.key
#   ASSOTIC_SSH_KEY_B64       base64 -w0 <the CI's own SSH private key>
#   ASSOTIC_SSH_KNOWN_HOSTS   the servers' host key lines (not secret; strict checking stays on)
# Never `set -x` here: values go through printf (a shell builtin, so no process argument
# list shows them) straight into files created 0600 by umask 077; nothing is printed.
set -euo pipefail
umask 077

missing=()
for name in ASSOTIC_SECRETS_KEY_B64 ASSOTIC_SSH_KEY_B64 ASSOTIC_SSH_KNOWN_HOSTS; do
    [ -n "${!name:-}" ] || missing+=("$name")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "install-secrets: CI variable(s) not set: ${missing[*]} (see docs/updates.md)" >&2
    exit 1
fi

key_file="${ASSOTIC_SECRETS_KEY:-$HOME/.config/assotic/secrets.key}"
mkdir -p "$(dirname "$key_file")" "$HOME/.ssh"
printf '%s' "$ASSOTIC_SECRETS_KEY_B64" | base64 -d > "$key_file"
printf '%s' "$ASSOTIC_SSH_KEY_B64" | base64 -d > "$HOME/.ssh/id_ed25519"
printf '%s\n' "$ASSOTIC_SSH_KNOWN_HOSTS" > "$HOME/.ssh/known_hosts"
chmod 0600 "$key_file" "$HOME/.ssh/id_ed25519"
chmod 0644 "$HOME/.ssh/known_hosts"
echo "install-secrets: secrets key, SSH key and known_hosts written (0600, 0600, 0644)"
