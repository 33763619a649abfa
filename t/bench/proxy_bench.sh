#!/bin/sh
# sluice - SPDX-License-Identifier: MIT
#
# Proxy benchmark: h2 clients (h2load, h2c prior knowledge) -> proxy ->
# HTTP/1.1 upstream, where the proxy is sluice, nginx and nghttpx in turn,
# all in front of the same fast upstream (nginx serving a small static
# file) so that the proxy is what is measured. Prints req/s per proxy and
# sluice's ratio to each. Everything binds 127.0.0.1 on free ports and is
# stopped by PID at the end.
#
# usage: t/bench/proxy_bench.sh path/to/sluice [requests] [clients] [streams]
set -eu

SLUICE=${1:?usage: $0 path/to/sluice [requests] [clients] [streams]}
N=${2:-50000}
C=${3:-20}
M=${4:-10}
WORKERS=${WORKERS:-2}
for p in h2load nginx nghttpx python3; do
    command -v "$p" >/dev/null 2>&1 || { echo "proxy_bench: $p not installed" >&2; exit 2; }
done
NGINX=$(command -v nginx)
D=$(mktemp -d /tmp/sluice-proxy-bench.XXXXXX)
chmod 755 "$D" # nginx workers (www-data when run as root) read the file
PIDS=""
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null || true; done
    sleep 0.3
    [ -n "${KEEP:-}" ] || rm -rf "$D"
}
trap cleanup EXIT INT TERM

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    i=0
    while ! python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null; do
        i=$((i+1)); [ $i -lt 100 ] || { echo "proxy_bench: nothing on port $1" >&2; exit 1; }
        sleep 0.1
    done
}

UP=$(port); SP=$(port); NP=$(port); XP=$(port)
mkdir -p "$D/www" "$D/up" "$D/ngx"
head -c 1024 /dev/zero | tr '\0' 'a' > "$D/www/small.txt"

common="pid PIDFILE; error_log ERRLOG warn; worker_processes $WORKERS; daemon off;
events { worker_connections 4096; }"
mkconf() { # dir body
    printf '%s\nhttp { access_log off; client_body_temp_path %s/cb; proxy_temp_path %s/pt;
fastcgi_temp_path %s/ft; uwsgi_temp_path %s/ut; scgi_temp_path %s/st; %s }\n' \
        "$(echo "$common" | sed "s#PIDFILE#$1/nginx.pid#; s#ERRLOG#$1/error.log#")" \
        "$1" "$1" "$1" "$1" "$1" "$2" > "$1/nginx.conf"
}
mkconf "$D/up" "server { listen 127.0.0.1:$UP; root $D/www; keepalive_requests 100000; }"
mkconf "$D/ngx" "upstream app { server 127.0.0.1:$UP; keepalive 64; }
server { listen 127.0.0.1:$NP http2; http2_max_concurrent_streams 128; keepalive_requests 1000000;
  location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
"$NGINX" -p "$D/up" -c "$D/up/nginx.conf" 2>"$D/up/stderr" & PIDS="$PIDS $!"
"$NGINX" -p "$D/ngx" -c "$D/ngx/nginx.conf" 2>"$D/ngx/stderr" & PIDS="$PIDS $!"

cat > "$D/sluice.json" <<JSON
{"workers": $WORKERS, "access_log": false, "log_level": "warn",
 "listen": [{"addr": "127.0.0.1:$SP", "h2c": true}],
 "upstreams": {"app": {"servers": ["127.0.0.1:$UP"], "keepalive": 64}},
 "routes": [{"path": "/", "handler": "proxy", "upstream": "app"}]}
JSON
"$SLUICE" -c "$D/sluice.json" >/dev/null 2>"$D/sluice.err" & PIDS="$PIDS $!"
nghttpx --frontend="127.0.0.1,$XP;no-tls" --backend="127.0.0.1,$UP" --workers="$WORKERS" \
    --no-ocsp --log-level=WARN --errorlog-file="$D/nghttpx.err" \
    --accesslog-file=/dev/null >/dev/null 2>&1 & PIDS="$PIDS $!"
for p in $UP $SP $NP $XP; do wait_port "$p"; done

run() { # name port
    h2load -n "$N" -c "$C" -m "$M" "http://127.0.0.1:$2/small.txt" > "$D/$1.out" 2>&1 || true
    rps=$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' "$D/$1.out")
    ok=$(sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p' "$D/$1.out")
    echo "$1 $rps $ok"
}
h2load -n 2000 -c 4 -m 4 "http://127.0.0.1:$SP/small.txt" >/dev/null 2>&1 || true # warm up
S=$(run sluice "$SP"); G=$(run nginx "$NP"); X=$(run nghttpx "$XP")
echo "proxy benchmark: h2load -n $N -c $C -m $M, 1 KiB file from nginx, $WORKERS workers each"
for line in "$S" "$G" "$X"; do
    set -- $line
    printf '  %-8s %10s req/s  (%s x 2xx)\n' "$1" "${2:-?}" "${3:-?}"
done
python3 - "$S" "$G" "$X" <<'PY'
import sys
v = {l.split()[0]: float(l.split()[1]) for l in sys.argv[1:] if len(l.split()) > 1}
s = v.get("sluice")
for o in ("nginx", "nghttpx"):
    if s and v.get(o):
        print("  sluice / %-7s = %.2f" % (o, s / v[o]))
PY
