#!/usr/bin/env bash
# Installs the Debian packages mailsift's tests and benchmarks run against:
# clamd (antivirus), unbound (test DNS), Postfix tools (smtp-source/smtp-sink), swaks,
# SpamAssassin (stock rules + spamd for the bench, spamc for the spamd-protocol tests),
# Dovecot with Sieve (the Junk-folder learning test), the libraries of Debian's Exim (whose
# binary install-test-exim.sh unpacks for the spamd-protocol test), bogofilter, rspamd,
# Chromium (UI tests), valgrind (bench/ab_score.py's instruction counts),
# the PCRE2 headers the rule engine's native matcher is built against (libpcre2-dev), and
# Debian's python3.11 with venv and headers (the Makefile builds .venv on it).
# Idempotent: does nothing when every package is present. Services are not started here
# (policy-rc.d blocks it); tests start their own instances on loopback.
set -euo pipefail
PKGS=(clamav-daemon clamav unbound postfix swaks spamassassin spamd spamc bogofilter rspamd
      dovecot-imapd dovecot-sieve libspf2-2 libidn12 libmariadb3 libpq5 libperl5.36 libgnutls-dane0
      chromium valgrind openssl zip libpcre2-dev gcc python3.11-venv python3.11-dev)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
bash "$(dirname "$0")/install-test-exim.sh"  # an Exim binary for the spamd-protocol test
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
echo "installing system packages: ${missing[*]}"
# Never start daemons from package scripts: tests run their own on loopback.
printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
$SUDO chmod +x /usr/sbin/policy-rc.d
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
export DEBIAN_FRONTEND=noninteractive
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
  $SUDO apt-get update -qq
fi
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
$SUDO rm -f /usr/sbin/policy-rc.d
