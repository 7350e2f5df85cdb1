# shellcheck shell=bash
# Helpers shared by the shell harnesses: scripts/bench.d/lib.sh (and so
# scripts/bench and scripts/bench.d/profile) and scripts/container-smoke.
# Sourced, not run; it only defines functions (no files, traps or
# variables), so any script can source it.
#
# wait_listening calls the sourcing script's die function.

# Stop one process we started: TERM, then KILL if it lingers.
stop() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 60; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# A loopback port nobody listens on, below the ephemeral range so outgoing
# connections do not take it meanwhile.
free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 12000))
        if ! { : 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null; then
            echo "$port"
            return
        fi
    done
}

# GET /health with bash's own /dev/tcp (no fork, so polling is fine-grained).
health_ok() {
    local line=
    {
        printf 'GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
        IFS= read -r -t 2 line <&3
    } 2>/dev/null 3<>"/dev/tcp/127.0.0.1/$1" || return 1
    [[ $line == "HTTP/1.1 200"* ]]
}

# Wait until something accepts connections on a port (bounded: 10 s).
wait_listening() {
    local i
    for ((i = 0; i < 1000; i++)); do
        { : 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null && return 0
        sleep 0.01
    done
    die "nothing listens on 127.0.0.1:$1 after 10 s (see $2)"
}

# A field of /proc/PID/status in KiB (VmRSS: resident now, VmHWM: peak).
status_kib() {
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# hmac KEY FILE: the hex HMAC-SHA256 of FILE's bytes with KEY.
hmac() { openssl dgst -sha256 -hmac "$1" <"$2" | sed 's/^.*= //'; }

# key_fingerprint KEYFILE: the hex SHA-256 of a key, its hook URL's last segment.
key_fingerprint() { sha256sum <"$1" | cut -d' ' -f1; }
