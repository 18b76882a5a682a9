#!/usr/bin/env bash
# postgres.sh finds the PostgreSQL server binaries used by weir's
# PostgreSQL sink tests (internal/pgtest starts a throwaway server from
# them) and prints their directory and version on two lines:
#
#   scripts/postgres.sh         # /usr/lib/postgresql/15/bin
#                               # postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)
#
# It looks in $WEIR_PG_BIN, then for initdb on PATH, then in Debian's
# /usr/lib/postgresql/<version>/bin (newest first). When none has initdb,
# pg_ctl and postgres, it installs Debian's `postgresql` package with
# apt-get (as root, non-interactive). It then checks that the server binary
# runs (--version). On failure one line on stderr says what failed and the
# script exits non-zero.
set -euo pipefail

fail() {
	echo "postgres.sh: $*" >&2
	exit 1
}

complete() { [ -x "$1/initdb" ] && [ -x "$1/pg_ctl" ] && [ -x "$1/postgres" ]; }

if [ -n "${WEIR_PG_BIN:-}" ] && ! complete "$WEIR_PG_BIN"; then
	fail "WEIR_PG_BIN=$WEIR_PG_BIN has no initdb, pg_ctl and postgres: point it at PostgreSQL's bin directory, or unset it"
fi

find_bin() {
	if [ -n "${WEIR_PG_BIN:-}" ]; then
		echo "$WEIR_PG_BIN"
		return 0
	fi
	local p d
	if p="$(command -v initdb 2>/dev/null)"; then
		d="$(dirname "$(readlink -f "$p")")"
		if complete "$d"; then
			echo "$d"
			return 0
		fi
	fi
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -n -r); do
		if complete "$d"; then
			echo "$d"
			return 0
		fi
	done
	return 1
}

if ! bin="$(find_bin)"; then
	command -v apt-get >/dev/null 2>&1 ||
		fail "PostgreSQL (initdb, pg_ctl, postgres) not found and apt-get is missing: install PostgreSQL and set WEIR_PG_BIN to its bin directory"
	[ "$(id -u)" -eq 0 ] ||
		fail "PostgreSQL not found: install it with 'sudo apt-get install postgresql' (this script installs it only as root)"
	log="${TMPDIR:-/tmp}/weir-postgres-install.log"
	# Serialize concurrent installs: a second caller waits for the first.
	exec 9>"${TMPDIR:-/tmp}/weir-postgres-install.lock"
	if command -v flock >/dev/null 2>&1; then
		flock -w 900 9 || fail "timed out after 900s waiting for another PostgreSQL install"
	fi
	if ! bin="$(find_bin)"; then
		echo "postgres.sh: installing Debian's postgresql with apt-get (log: $log)" >&2
		export DEBIAN_FRONTEND=noninteractive
		# The tests start their own servers: no need for the package's
		# default cluster, but it is harmless (policy-rc.d may forbid
		# starting it in a container; apt-get still succeeds).
		if ! apt-get install -y --no-install-recommends postgresql >"$log" 2>&1; then
			# The package lists may be missing or stale: update once and retry.
			apt-get update >>"$log" 2>&1 || fail "apt-get update failed (no network to the Debian mirror?): $(tail -n1 "$log") (details: $log)"
			apt-get install -y --no-install-recommends postgresql >>"$log" 2>&1 ||
				fail "apt-get install postgresql failed: $(grep -m1 -E '^E:' "$log" || tail -n1 "$log") (details: $log)"
		fi
		bin="$(find_bin)" || fail "apt-get installed postgresql but no /usr/lib/postgresql/*/bin has initdb, pg_ctl and postgres (details: $log)"
	fi
fi

if ! version="$(timeout 60 "$bin/postgres" --version 2>&1)"; then
	fail "$bin/postgres does not run: $(echo "$version" | tail -n1)"
fi
echo "$bin"
echo "$version"
