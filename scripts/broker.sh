#!/usr/bin/env bash
# The Kafka-protocol broker the tests run against: tansu, in memory, on 127.0.0.1.
#
#   scripts/broker.sh install   install tansu unless one is on PATH (≈ 20 minutes to build)
#   scripts/broker.sh start     start it on a free port; prints LOGHEAL_TEST_BROKERS=HOST:PORT
#   scripts/broker.sh stop      stop the one `start` started
#   scripts/broker.sh path      print the tansu binary's path (for tests that start their own)
#
# The broker's pid and address live in target/broker/.
set -euo pipefail
cd "$(dirname "$0")/.."
state=target/broker
mkdir -p "$state"
# Where `cargo install` puts it, even when that is not on PATH yet.
export PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"

install() {
    if command -v tansu >/dev/null 2>&1; then
        return
    fi
    echo "broker: installing tansu (cargo install --locked tansu --features dynostore; ≈ 20 minutes)" >&2
    # dynostore gives the in-memory storage engine the tests use.
    cargo install --locked tansu --version 0.6.0 --features dynostore >&2
}

# A port nothing answers on, below the ephemeral range (32768 and up on Linux), where a
# client's outgoing connection may hold a port that nothing answers on but that cannot
# be bound.
free_port() {
    local port
    while true; do
        port=$((20000 + RANDOM % 12000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
}

start() {
    install
    stop 2>/dev/null || true
    local port address pid
    # A port can still be taken between the look and the bind: a few tries.
    for _ in 1 2 3 4 5; do
        port=$(free_port)
        address="127.0.0.1:$port"
        tansu broker --listener-url "tcp://$address" --advertised-listener-url "tcp://$address" \
            --storage-engine memory://tansu/ >"$state/broker.log" 2>&1 &
        pid=$!
        echo "$pid" >"$state/pid"
        echo "$address" >"$state/address"
        for _ in $(seq 1 100); do
            if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
                echo "LOGHEAL_TEST_BROKERS=$address"
                return
            fi
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        echo "broker: tansu did not start on $address; its log:" >&2
        cat "$state/broker.log" >&2
        stop
    done
    exit 1
}

stop() {
    if [[ -f "$state/pid" ]]; then
        kill "$(cat "$state/pid")" 2>/dev/null || true
        rm -f "$state/pid" "$state/address"
    fi
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    path) install; command -v tansu ;;
    *) echo "usage: $0 install|start|stop|path" >&2; exit 2 ;;
esac
