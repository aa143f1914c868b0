#!/usr/bin/env bash
# Unpacks Debian's Exim (exim4-daemon-heavy: the build with content scanning, i.e. the
# `spam =` ACL condition) into /opt/mailsift-test/exim4 for the spamd-protocol test, which
# runs `exim4 -C FILE -bh IP` (a simulated SMTP session: ACLs run, nothing is queued or
# delivered, no daemon). Exim cannot be installed as a package beside Postfix: both are the
# system's mail-transport-agent. Its libraries come from install-system-deps.sh; this adds
# the binary and the system user its build looks up at start (Debian-exim). Idempotent.
set -euo pipefail
DEST=/opt/mailsift-test/exim4
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
if ! id Debian-exim >/dev/null 2>&1; then
  $SUDO useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin Debian-exim
fi
if [ -x "$DEST/usr/sbin/exim4" ]; then exit 0; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"  # apt's download user must be able to write here
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
  $SUDO apt-get update -qq
fi
(cd "$tmp" && apt-get download -qq exim4-daemon-heavy 2>/dev/null)
$SUDO mkdir -p "$DEST"
$SUDO dpkg-deb -x "$tmp"/exim4-daemon-heavy_*.deb "$DEST"
echo "exim4 unpacked into $DEST"
