#!/usr/bin/env bash
# SurrealDB for the tests: build once per machine, start if down. (Nothing to
# seed: each test makes and seeds a database of its own, and live_cli
# --surreal seeds its database on first use.)
#
#   .ci/surreal.sh install   build tools/surreal-server into the cache folder
#                            unless that exact version is installed already
#   .ci/surreal.sh start     install, then start it on 127.0.0.1:8000 with
#                            memory storage if nothing answers there, and wait
#                            until it is ready
#
# The cache folder is outside the checkout so that later runs (and later
# checkouts) on the same machine reuse the build:
# ${VANTAGE_LIVE_TOOLS:-$HOME/.cache/vantage-live}/surreal-3.3.5.
# A release build from nothing takes about 35 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."

version=3.3.5
root="${VANTAGE_LIVE_TOOLS:-$HOME/.cache/vantage-live}/surreal-$version"
bin="$root/bin/surreal-server"
addr=127.0.0.1:8000
log="${VANTAGE_LIVE_SURREAL_LOG:-$root/server.log}"

installed() { [ -x "$bin" ] && [ -f "$root/.installed-$version" ]; }

install() {
    if installed; then
        echo "SurrealDB $version is installed at $bin"
        return
    fi
    echo "Building SurrealDB $version into $root (about 35 minutes on 2 cores, once per machine)"
    mkdir -p "$root"
    # The server's own target folder, kept beside the install so an
    # interrupted build resumes where it stopped.
    CARGO_TARGET_DIR="$root/target" \
        cargo install --locked --path tools/surreal-server --root "$root" --force
    touch "$root/.installed-$version"
    # The install is all later runs need.
    rm -rf "$root/target"
}

up() { curl -fsS --max-time 2 "http://$addr/version" >/dev/null 2>&1; }

start() {
    if up; then
        echo "SurrealDB answers at $addr ($(curl -fsS --max-time 2 "http://$addr/version"))"
        return
    fi
    install
    echo "Starting SurrealDB $version on $addr (memory storage)"
    nohup "$bin" start --bind "$addr" --user root --pass root --log warn memory \
        >>"$log" 2>&1 </dev/null &
    for _ in $(seq 1 60); do
        if up; then
            echo "SurrealDB is up ($(curl -fsS --max-time 2 "http://$addr/version"))"
            return
        fi
        sleep 0.5
    done
    echo "SurrealDB did not answer at $addr within 30 s; last log lines:" >&2
    tail -n 20 "$log" >&2 || true
    return 1
}

case "${1:-start}" in
    install) install ;;
    start) start ;;
    *) echo "usage: $0 [install|start]" >&2; exit 2 ;;
esac
