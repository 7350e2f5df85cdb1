# shellcheck shell=bash
# shellcheck disable=SC2034,SC2154 # variables are shared with the scripts that source this
# Shared by scripts/bench and scripts/bench.d/profile (sourced, not run):
# process bookkeeping, the signed inputs, and starting nginx,
# adnanh/webhook and flux-recv on free ports. The loopback and /proc
# helpers (stop, free_port, health_ok, wait_listening, status_kib, mib,
# hmac, key_fingerprint) are in scripts/lib/fluxrecv.sh, sourced here.
#
# Expects: $here (this folder), $bin (flux-recv), $DURATION and
# $CONNECTIONS (for floods), and a die function.

# shellcheck source=scripts/lib/fluxrecv.sh
source "$here/../lib/fluxrecv.sh"

# ---------------------------------------------------------------- processes

tmp=$(mktemp -d "${TMPDIR:-/tmp}/flux-recv-bench.XXXXXX")
pids=()

cleanup() {
    local pid
    for pid in "${pids[@]}"; do stop "$pid"; done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- inputs

# A ~3.5 KB GitHub push, a fresh random key, and the right and a wrong
# X-Hub-Signature-256 for it.
body=$tmp/push.json
cp "$here/github-push.json" "$body"
key=$(openssl rand -hex 32)
# flux-recv watches the config's and the keys' directories for changes: keep
# them apart from the logs written during the floods, as in a deployment
# (a mounted Secret), so every log line is not also a file event.
mkdir -p "$tmp/config"
printf %s "$key" >"$tmp/config/github.key"
good_sig=sha256=$(hmac "$key" "$body")
bad_sig=sha256=$(hmac "not-$key" "$body")
fingerprint=$(key_fingerprint "$tmp/config/github.key")

# A Standard Webhooks endpoint (a whsec_ signing secret), and a signature of
# the right shape that no key made: its flood is refused after the HMAC of
# webhook-id, webhook-timestamp and the body (post.lua stamps each flood
# with the time it starts, so that none is refused as stale instead).
printf 'whsec_%s' "$(openssl rand -base64 32)" >"$tmp/config/swh.key"
swh_fingerprint=$(key_fingerprint "$tmp/config/swh.key")
swh_bad_sig=v1,$(openssl rand -base64 32)

# 64 pushes to different branches, each correctly signed: cycled through,
# the 32 hooks in flight at any moment are all different notifications, so
# each is its own call to the Flux API (identical ones would be coalesced).
mkdir -p "$tmp/bodies"
for ((i = 1; i <= 64; i++)); do
    sed "s|refs/heads/main|refs/heads/bench-$i|" "$body" >"$tmp/bodies/$i.json"
    printf 'sha256=%s\n' "$(hmac "$key" "$tmp/bodies/$i.json")" >"$tmp/bodies/$i.sig"
done

# ---------------------------------------------------------------- servers

# The test pair the TLS floods are served with (loopback only).
tls_dir=$here/../attack.d/tls

# nginx: the ceiling on $nginx_port (over TLS on $nginx_tls_port), the Flux
# API stand-in on $fluxd_port, the relay ceiling on $proxy_port.
start_nginx() {
    nginx_port=$(free_port)
    nginx_tls_port=$(free_port)
    fluxd_port=$(free_port)
    proxy_port=$(free_port)
    mkdir -p "$tmp/nginx/logs"
    sed -e "s|@PREFIX@|$tmp/nginx|g" -e "s|@PORT@|$nginx_port|g" -e "s|@FLUXD_PORT@|$fluxd_port|g" \
        -e "s|@PROXY_PORT@|$proxy_port|g" -e "s|@TLS_PORT@|$nginx_tls_port|g" \
        -e "s|@TLS_DIR@|$tls_dir|g" "$here/nginx.conf" >"$tmp/nginx/nginx.conf"
    nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" -g 'daemon off;' 2>"$tmp/nginx/logs/stderr" &
    pids+=($!)
    wait_listening "$nginx_port" "$tmp/nginx/logs"
    wait_listening "$fluxd_port" "$tmp/nginx/logs"
    wait_listening "$proxy_port" "$tmp/nginx/logs"
    wait_listening "$nginx_tls_port" "$tmp/nginx/logs"
}

start_webhook() {
    [[ -f $tmp/hooks.json ]] || sed -e "s|@SECRET@|$key|g" "$here/hooks.json" >"$tmp/hooks.json"
    webhook_port=$(free_port)
    webhook -hooks "$tmp/hooks.json" -ip 127.0.0.1 -port "$webhook_port" >>"$tmp/webhook.log" 2>&1 &
    webhook_pid=$!
    pids+=("$webhook_pid")
    wait_listening "$webhook_port" "$tmp/webhook.log"
}

# Start flux-recv as an operator would (defaults, info logs to a file),
# relaying to the stand-in, and return once /health answers. Sets
# recv_started_us and recv_ready_us (µs since the epoch).
start_recv() {
    [[ -f $tmp/config/fluxrecv.yaml ]] || cat >"$tmp/config/fluxrecv.yaml" <<YAML
fluxRecvVersion: 1
api: http://127.0.0.1:$fluxd_port/api/flux
endpoints:
- source: GitHub
  keyPath: github.key
- source: StandardWebhooks
  keyPath: swh.key
  notify: {git: {url: "git@github.com:example-org/cluster-config.git", branch: main}}
YAML
    recv_port=$(free_port)
    recv_started_us=${EPOCHREALTIME/[.,]/}
    "$bin" --config "$tmp/config/fluxrecv.yaml" --listen "127.0.0.1:$recv_port" 2>>"$tmp/flux-recv.log" &
    recv_pid=$!
    pids+=("$recv_pid")
    # Poll without sleeping (a refused connect costs microseconds), 10 s at most.
    until health_ok "$recv_port"; do
        kill -0 "$recv_pid" 2>/dev/null || die "flux-recv exited; see its log:
$(tail -5 "$tmp/flux-recv.log")"
        ((${EPOCHREALTIME/[.,]/} - recv_started_us < 10000000)) || die "flux-recv did not answer /health in 10 s"
    done
    recv_ready_us=${EPOCHREALTIME/[.,]/}
}

# A second flux-recv serving HTTPS on $recv_tls_port (the same config and
# keys), its /health on a plain-HTTP admin address; logs apart, so the plain
# one's relay counts are its own. Sets recv_tls_pid.
start_recv_tls() {
    recv_tls_port=$(free_port)
    local admin_port started_us
    admin_port=$(free_port)
    started_us=${EPOCHREALTIME/[.,]/}
    "$bin" --config "$tmp/config/fluxrecv.yaml" --listen "127.0.0.1:$recv_tls_port" \
        --tls-cert "$tls_dir/cert.pem" --tls-key "$tls_dir/key.pem" \
        --metrics-listen "127.0.0.1:$admin_port" 2>>"$tmp/flux-recv-tls.log" &
    recv_tls_pid=$!
    pids+=("$recv_tls_pid")
    until health_ok "$admin_port"; do
        kill -0 "$recv_tls_pid" 2>/dev/null || die "flux-recv (TLS) exited; see its log:
$(tail -5 "$tmp/flux-recv-tls.log")"
        ((${EPOCHREALTIME/[.,]/} - started_us < 10000000)) || die "flux-recv (TLS) did not answer /health in 10 s"
    done
}

# ---------------------------------------------------------------- floods

declare -A R # R[target.case.field]

# flood TARGET CASE URL [SIGNATURE]: one wrk run, results into R. Without
# a signature, the 64 distinct signed pushes are cycled through; a
# signature starting `v1,` goes in webhook-signature (Standard Webhooks).
# A CASE ending in `-new` opens a new connection for every request.
flood() {
    local out line kv inputs=(BENCH_BODIES="$tmp/bodies" BENCH_COUNT=64)
    (($# > 3)) && inputs=(BENCH_BODY="$body" BENCH_SIG="$4")
    [[ ${4:-} == v1,* ]] && inputs=(BENCH_BODY="$body" BENCH_SWH_SIG="$4")
    [[ $2 == *-new ]] && inputs+=(BENCH_CLOSE=1)
    out=$(env "${inputs[@]}" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 2s \
        -s "$here/post.lua" "$3") || die "wrk failed against $3: $out"
    line=$(grep '^RESULT ' <<<"$out") || die "no RESULT from wrk: $out"
    for kv in ${line#RESULT }; do
        R[$1.$2.${kv%%=*}]=${kv#*=}
    done
    printf '  %-9s %-8s %8s req/s  p50 %6s µs  p99 %6s µs  non-2xx %7s  socket errors %s\n' \
        "$1" "$2" "${R[$1.$2.rps]}" "${R[$1.$2.p50_us]}" "${R[$1.$2.p99_us]}" \
        "${R[$1.$2.non2xx]}" "${R[$1.$2.socket_errors]}"
}

# A short untimed run first, so every target is measured warm.
warm() {
    BENCH_BODY=$body BENCH_SIG=$2 wrk -t1 -c"$CONNECTIONS" -d1s -s "$here/post.lua" "$1" >/dev/null
}
