# failures.awk: print the full output of every failed test of a `go test -v`
# log (make test shows only the summary lines on the console). A test's
# output is the lines from its "=== RUN" to its "--- FAIL", subtests and
# the job logs it keeps included; at most the last `max` lines of each.
#
#   awk -f scripts/failures.awk .cache/test.log
BEGIN { max = 120 }
/^=== RUN   / {
	name = $3
	if (index(name, "/") == 0) { top = name; n = 0 }
}
{ if (top != "") buf[n++] = $0 }
/^--- FAIL: / {
	name = $3
	if (name == top) {
		from = (n > max) ? n - max : 0
		printf "\n----- output of %s (%d lines%s) -----\n", top, n, (from > 0 ? ", the last " max : "")
		for (i = from; i < n; i++) print buf[i]
		top = ""; n = 0
	}
}
