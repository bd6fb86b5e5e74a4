#!/usr/bin/env bash
# Signs upgrade assets for nodes that accept only signed upgrades
# (machine.install.trustedKeys). For each FILE it writes FILE.sig, the
# detached signature `cairnctl upgrade` sends with it:
#   cairn-signature-v1 ed25519 <key id> <base64 signature>
# over the text `cairn upgrade sha256:<FILE's sha256>`; the key id is the
# first 16 hex digits of the sha256 of the raw public key. The format is
# config/src/signing.rs's (config/tests/signing_openssl.rs checks that the
# two agree).
#
# Usage: images/sign-upgrade.sh KEY FILE...
#   KEY: an Ed25519 private key, PKCS#8 PEM (cairnctl gen upgrade-key).
set -euo pipefail

die() { echo "sign-upgrade: $*" >&2; exit 1; }
[ $# -ge 2 ] || die "usage: $0 KEY FILE..."
key=$1
shift
[ -r "$key" ] || die "cannot read the signing key $key"
command -v openssl >/dev/null || die "openssl is needed (images/install-deps.sh installs it)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
openssl pkey -in "$key" -pubout -outform DER -out "$tmp/pub.der" 2>"$tmp/err" ||
  die "$key is not a private key: $(head -1 "$tmp/err")"
# An Ed25519 SubjectPublicKeyInfo: this 12-byte prefix, then the 32-byte key.
prefix=$(head -c 12 "$tmp/pub.der" | od -An -tx1 | tr -d ' \n')
[ "$prefix" = 302a300506032b6570032100 ] && [ "$(stat -c %s "$tmp/pub.der")" = 44 ] ||
  die "$key is not an Ed25519 key (cairnctl gen upgrade-key makes one)"
key_id=$(tail -c 32 "$tmp/pub.der" | sha256sum | cut -c1-16)

for f in "$@"; do
  [ -f "$f" ] || die "no file $f"
  sum=$(sha256sum "$f" | cut -c1-64)
  printf 'cairn upgrade sha256:%s' "$sum" >"$tmp/msg"
  openssl pkeyutl -sign -rawin -inkey "$key" -in "$tmp/msg" -out "$tmp/sig" 2>"$tmp/err" ||
    die "signing $f failed: $(head -1 "$tmp/err")"
  printf '%s ed25519 %s %s\n' cairn-signature-v1 "$key_id" "$(base64 -w0 "$tmp/sig")" >"$f.sig.tmp"
  mv "$f.sig.tmp" "$f.sig"
  echo "sign-upgrade: $f.sig (key $key_id)"
done
