package weir

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Failpoints are the named protocol steps a test can crash the process at:
//
//	mid-epoch                      a sink has an open transaction with
//	                               records; barrier N has arrived
//	after-snapshot-before-ack      a task's snapshot is durable, its ack
//	                               not yet sent
//	between-data-and-marker        epoch N's records are written, its
//	                               progress marker not yet
//	after-complete-before-commit   checkpoint N is complete, its
//	                               transaction not yet committed
//	during-commit                  the commit of epoch N is about to be sent
//	after-commit                   epoch N is committed, nothing else yet
//	after-prepare                  a PostgreSQL sink has run PREPARE
//	                               TRANSACTION for epoch N (its checkpoint
//	                               is not complete yet)
var Failpoints = []string{
	"mid-epoch", "after-snapshot-before-ack", "between-data-and-marker",
	"after-complete-before-commit", "during-commit", "after-commit", "after-prepare",
}

// FailpointEnv is the environment variable that arms a failpoint in the
// engine binary: WEIR_FAILPOINT=name or name@N (the N-th time the step is
// reached, default 1). The process then kills itself with SIGKILL there.
const FailpointEnv = "WEIR_FAILPOINT"

// WithFailpoint calls f at every named protocol step (see Failpoints).
func WithFailpoint(f func(name string)) Option { return func(o *options) { o.failpoint = f } }

// FailpointFromEnv returns the option that arms the failpoint named in
// $WEIR_FAILPOINT, or nil when it is not set. A malformed value is an error.
func FailpointFromEnv() (Option, error) {
	v := os.Getenv(FailpointEnv)
	if v == "" {
		return nil, nil
	}
	name, count, hasCount := strings.Cut(v, "@")
	n := 1
	if hasCount {
		var err error
		if n, err = strconv.Atoi(count); err != nil || n < 1 {
			return nil, fmt.Errorf("%s=%q: the count after @ must be a positive whole number", FailpointEnv, v)
		}
	}
	known := false
	for _, f := range Failpoints {
		known = known || f == name
	}
	if !known {
		return nil, fmt.Errorf("%s=%q: unknown failpoint; use one of %s", FailpointEnv, v, strings.Join(Failpoints, ", "))
	}
	var mu sync.Mutex
	hits := 0
	return WithFailpoint(func(step string) {
		if step != name {
			return
		}
		mu.Lock()
		hits++
		h := hits
		mu.Unlock()
		if h == n {
			fmt.Fprintf(os.Stderr, "failpoint %s hit (%d): killing the process\n", name, h)
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // SIGKILL is not delivered synchronously; never return
		}
	}), nil
}
