#!/usr/bin/env bash
# `make run`: the main job on localhost.
#  1. train the default model through the pipeline if no model is being served yet
#  2. generate a self-signed TLS certificate and an admin API key on first run
#  3. start the scoring API and the SMTP filter (and, when nothing listens on the configured
#     next hop, Postfix's smtp-sink there as a stand-in mail server so mail has somewhere to go)
# Stops everything on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true
MS=.venv/bin/mailsift
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
VAR=${MAILSIFT_PATHS__VAR_DIR:-var}
mkdir -p "$VAR"

if ! $MS models serving >/dev/null 2>&1; then
  echo "== no trained model yet: training the default model (every shared corpus)"
  $MS train --default
fi
$MS models serving

if [ ! -f "$VAR/tls/cert.pem" ]; then
  $MS tls selfsigned --out "$VAR/tls"
fi
export MAILSIFT_SMTP__TLS_CERT="${MAILSIFT_SMTP__TLS_CERT:-$VAR/tls/cert.pem}"
export MAILSIFT_SMTP__TLS_KEY="${MAILSIFT_SMTP__TLS_KEY:-$VAR/tls/key.pem}"

if [ ! -f "$VAR/admin.key" ]; then
  $MS keys create --name make-run --scope admin > "$VAR/admin.key"
  chmod 600 "$VAR/admin.key"
fi


# Antivirus is on by default: start a clamd of our own when none answers on the configured
# socket. It uses the system's signature databases when there are any (freshclam keeps them
# current on a connected machine); offline, only the EICAR test signatures are loaded.
AV_ON=$(.venv/bin/python -c "from mailsift.config import get_settings as g; print(int(g().antivirus.enabled))")
AV_SOCK=$(.venv/bin/python -c "from mailsift.config import get_settings as g; print(g().antivirus.clamd_socket)")
if [ "$AV_ON" = 1 ] && [[ "$AV_SOCK" != tcp://* ]] && [ ! -S "$AV_SOCK" ]; then
  CL="$(cd "$VAR" && pwd)/clamd"
  mkdir -p "$CL/db"
  DB=/var/lib/clamav
  if ! ls "$DB"/*.c[lv]d >/dev/null 2>&1; then
    DB="$CL/db"
    echo "== no ClamAV signature databases on this machine (run freshclam where online): clamd loads only the EICAR test signatures"
    printf '44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test\n' > "$DB/test.hdb"
    EICAR='X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'
    printf 'Eicar-Test-Body:0:*:%s\n' "$(printf '%s' "$EICAR" | od -An -tx1 | tr -d ' \n')" > "$DB/test.ndb"
  fi
  cat > "$CL/clamd.conf" <<CONF
Foreground yes
LocalSocket $CL/clamd.sock
DatabaseDirectory $DB
User $(id -un)
ScanArchive yes
StreamMaxLength 50M
LogTime yes
CONF
  /usr/sbin/clamd --config-file="$CL/clamd.conf" &
  pids+=($!)
  export MAILSIFT_ANTIVIRUS__CLAMD_SOCKET="$CL/clamd.sock"
  for _ in $(seq 1 120); do [ -S "$CL/clamd.sock" ] && break; sleep 0.5; done
fi

NH_HOST=$(.venv/bin/python -c "from mailsift.config import get_settings as g; print(g().smtp.next_hop_host)")
NH_PORT=$(.venv/bin/python -c "from mailsift.config import get_settings as g; print(g().smtp.next_hop_port)")
if ! (exec 3<>"/dev/tcp/$NH_HOST/$NH_PORT") 2>/dev/null; then
  mkdir -p "$VAR/sink"
  echo "== nothing listens on the next hop $NH_HOST:$NH_PORT: starting smtp-sink there (mail lands in $VAR/sink)"
  /usr/sbin/smtp-sink -u "$(id -un)" -d "$VAR/sink/%Y%m%d%H/%M." "$NH_HOST:$NH_PORT" 256 &
  pids+=($!)
fi

$MS serve api &
pids+=($!)
$MS serve smtp &
pids+=($!)
API=$(.venv/bin/python -c "from mailsift.config import get_settings as g; s=g(); print(f'{s.api.host}:{s.api.port}')")
SMTP=$(.venv/bin/python -c "from mailsift.config import get_settings as g; s=g(); print(f'{s.smtp.host}:{s.smtp.port}')")
echo "== mailsift is running: API http://$API (admin key in $VAR/admin.key), SMTP filter $SMTP. Ctrl-C stops."
wait -n "${pids[@]}"
