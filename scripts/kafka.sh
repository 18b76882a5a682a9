#!/usr/bin/env bash
# kafka.sh fetches the pinned Apache Kafka release used by weir's integration
# tests (package integration/broker) into a git-ignored cache and prints the
# path of its libs directory.
#
#   scripts/kafka.sh            # fetch if missing, print <cache>/4.1.1/libs
#
# Layout: ${WEIR_KAFKA_CACHE:-<repo>/.cache/kafka}/<version>/libs/*.jar
# The jars come from Maven Central through scripts/kafka-pom.xml (broker,
# storage tool, kafka-tools, log4j2 binding). A stamp file is written only
# after a complete fetch; while it matches the pom, later runs use the cache
# and touch no network. On failure one line on stderr says what failed and the
# script exits non-zero.
set -euo pipefail

KAFKA_VERSION=4.1.1

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
pom="$here/kafka-pom.xml"
cache="${WEIR_KAFKA_CACHE:-$root/.cache/kafka}"
dest="$cache/$KAFKA_VERSION"
libs="$dest/libs"
stamp="$dest/.complete"

fail() {
	echo "kafka.sh: $*" >&2
	exit 1
}

[ -f "$pom" ] || fail "missing $pom"
want="kafka $KAFKA_VERSION pom-sha256 $(sha256sum "$pom" | cut -d' ' -f1)"

cached() {
	[ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] &&
		[ -f "$libs/kafka_2.13-$KAFKA_VERSION.jar" ]
}

if cached; then
	echo "$libs"
	exit 0
fi

command -v java >/dev/null 2>&1 || fail "java not found on PATH (a JDK 17+ is needed to run the broker)"
command -v mvn >/dev/null 2>&1 || fail "mvn not found on PATH (Maven is needed to fetch Kafka $KAFKA_VERSION)"
mkdir -p "$dest" || fail "cannot create cache directory $dest"

# Serialize concurrent fetches (several test packages may start at once).
exec 9>"$dest/.lock"
if command -v flock >/dev/null 2>&1; then
	flock -w 900 9 || fail "timed out after 900s waiting for another fetch holding $dest/.lock"
fi
if cached; then
	echo "$libs"
	exit 0
fi

tmp="$dest/libs.tmp.$$"
log="$dest/fetch.log"
rm -rf "$tmp"
trap 'rm -rf "$tmp"' EXIT

if ! mvn -B -q -f "$pom" org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
	-DincludeScope=runtime -DoutputDirectory="$tmp" >"$log" 2>&1; then
	first="$(grep -m1 '\[ERROR\]' "$log" | sed 's/^.*\[ERROR\] *//' | cut -c1-200 || true)"
	if grep -qiE 'UnknownHost|Connection refused|Network is unreachable|connect timed out|Connection timed out|Could not transfer|No route to host|No plugin found for prefix' "$log"; then
		fail "no network: Maven could not download Kafka $KAFKA_VERSION from its repository: $first (details: $log)"
	elif grep -qiE 'Could not resolve|could not be resolved|not found' "$log"; then
		fail "Maven could not resolve Kafka $KAFKA_VERSION artifacts: $first (details: $log)"
	fi
	fail "mvn dependency:copy-dependencies failed: $first (details: $log)"
fi

[ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ] ||
	fail "fetch incomplete: kafka_2.13-$KAFKA_VERSION.jar missing after mvn (details: $log)"
[ -n "$(ls "$tmp"/kafka-tools-"$KAFKA_VERSION".jar 2>/dev/null)" ] ||
	fail "fetch incomplete: kafka-tools-$KAFKA_VERSION.jar missing after mvn (details: $log)"

rm -rf "$libs"
mv "$tmp" "$libs" || fail "cannot move $tmp to $libs"
echo "$want" >"$stamp.tmp" && mv "$stamp.tmp" "$stamp" || fail "cannot write $stamp"
echo "$libs"
