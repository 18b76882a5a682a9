#!/usr/bin/env bash
# chromium.sh finds the headless browser used by weir's browser test (the
# status page, cmd/engine TestStatusPageInBrowser) and prints its path and
# version on two lines:
#
#   scripts/chromium.sh         # /usr/bin/chromium
#                               # Chromium 156.0.8078.114 built on Debian ...
#
# It looks for $WEIR_CHROMIUM, then chromium, chromium-browser on PATH. When
# none is there it installs Debian's `chromium` package with apt-get (as
# root; a few hundred MB, minutes on first use). It then checks that the
# browser starts headless (--version). On failure one line on stderr says
# what failed and the script exits non-zero.
set -euo pipefail

fail() {
	echo "chromium.sh: $*" >&2
	exit 1
}

if [ -n "${WEIR_CHROMIUM:-}" ] && [ ! -x "$WEIR_CHROMIUM" ]; then
	fail "WEIR_CHROMIUM=$WEIR_CHROMIUM is not an executable file: point it at Chromium, or unset it to use chromium on PATH"
fi

find_chromium() {
	if [ -n "${WEIR_CHROMIUM:-}" ]; then
		echo "$WEIR_CHROMIUM"
		return 0
	fi
	command -v chromium 2>/dev/null || command -v chromium-browser 2>/dev/null || return 1
}

if ! bin="$(find_chromium)"; then
	command -v apt-get >/dev/null 2>&1 ||
		fail "chromium not found on PATH and apt-get is missing: install Chromium and set WEIR_CHROMIUM to its path"
	[ "$(id -u)" -eq 0 ] ||
		fail "chromium not found on PATH: install it with 'sudo apt-get install chromium' (this script installs it only as root)"
	log="${TMPDIR:-/tmp}/weir-chromium-install.log"
	# Serialize concurrent installs (apt holds its own lock, but a second
	# caller should wait for the first, not fail on the lock).
	exec 9>"${TMPDIR:-/tmp}/weir-chromium-install.lock"
	if command -v flock >/dev/null 2>&1; then
		flock -w 900 9 || fail "timed out after 900s waiting for another chromium install"
	fi
	if ! bin="$(find_chromium)"; then
		echo "chromium.sh: installing Debian's chromium with apt-get (log: $log)" >&2
		export DEBIAN_FRONTEND=noninteractive
		if ! apt-get install -y --no-install-recommends chromium >"$log" 2>&1; then
			# The package lists may be missing or stale: update once and retry.
			apt-get update >>"$log" 2>&1 || fail "apt-get update failed (no network to the Debian mirror?): $(tail -n1 "$log") (details: $log)"
			apt-get install -y --no-install-recommends chromium >>"$log" 2>&1 ||
				fail "apt-get install chromium failed: $(grep -m1 -E '^E:' "$log" || tail -n1 "$log") (details: $log)"
		fi
		bin="$(find_chromium)" || fail "apt-get installed chromium but it is not on PATH (details: $log)"
	fi
fi

# --version runs the browser binary itself (Debian's wrapper passes it on),
# so a broken install (missing libraries) fails here, not in the test.
# (Debian's wrapper may print shell noise on stderr; the version is on stdout.)
if ! version="$(timeout 60 "$bin" --headless --no-sandbox --version 2>/dev/null | grep -m1 -i chrom)"; then
	fail "$bin does not start: $(timeout 60 "$bin" --headless --no-sandbox --version 2>&1 | tail -n1)"
fi
echo "$bin"
echo "$version"
