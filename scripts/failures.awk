# failures.awk: print the full output of every failed test of a `go test -v`
# log (make test shows only the summary lines on the console). A test's
# output is the lines from its "=== RUN" to its "--- FAIL", subtests and
# the job logs it keeps included; at most the last `max` lines of each.
# Then, last (a CI excerpt shows the end), the test's own messages (its
# t.Log/t.Error lines, "file_test.go:N: ..."), at most the last `maxmsg`,
# each cut at `width` characters: a broker's log tail printed on failure
# cannot push the failure's cause out of sight.
#
#   awk -f scripts/failures.awk .cache/test.log
BEGIN { max = 120; maxmsg = 30; width = 400 }
/^=== RUN   / {
	name = $3
	if (index(name, "/") == 0) { top = name; n = 0; m = 0 }
}
{ if (top != "") buf[n++] = $0 }
top != "" && /^ +[A-Za-z0-9_]+\.go:[0-9]+: / { msg[m++] = $0 }
/^--- FAIL: / {
	name = $3
	if (name == top) {
		from = (n > max) ? n - max : 0
		printf "\n----- output of %s (%d lines%s) -----\n", top, n, (from > 0 ? ", the last " max : "")
		for (i = from; i < n; i++) print buf[i]
		from = (m > maxmsg) ? m - maxmsg : 0
		printf "----- messages of %s (%d%s) -----\n", top, m, (from > 0 ? ", the last " maxmsg : "")
		for (i = from; i < m; i++) print substr(msg[i], 1, width)
		printf "%s\n", $0
		top = ""; n = 0; m = 0
	}
}
