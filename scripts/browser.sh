#!/usr/bin/env bash
# The browser the incident-page tests drive: Debian's `chromium`, installed when missing.
#
#   scripts/browser.sh path     install it unless present; print its path
set -euo pipefail
find_it() {
    for candidate in "${LOGHEAL_TEST_CHROMIUM:-}" chromium chromium-browser; do
        if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}
case "${1:-path}" in
    path)
        if ! find_it; then
            echo "browser: installing Debian's chromium (apt-get install chromium)" >&2
            sudo=""
            if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
            $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || true
            $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
            find_it
        fi
        ;;
    *)
        echo "usage: $0 path" >&2
        exit 2
        ;;
esac
