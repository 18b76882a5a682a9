package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	weir "github.com/weirstream/weir"
	"github.com/weirstream/weir/integration/broker"
	"github.com/weirstream/weir/integration/verify"
)

// TestFarFutureRecordFailsJob puts one record from the year 2500 between
// two halves of the window job's input, after the job has written the
// windows the first half closes. With window.max_future (default 1h) the
// record stops the job with one line naming it and the setting, counted
// as the one bad record, before its event time reaches the watermark:
// the windows written before are intact and nothing is dropped as late.
// (Without the bound the record moved the watermark to 2500: every open
// window fired at once and every later record was dropped as late, and
// the checkpointed watermark kept it so after a restart.) The same input
// without that record then gives every window, none late.
func TestFarFutureRecordFailsJob(t *testing.T) {
	const events = 2000
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	in, out := topic(t, 1), topic(t, 1)
	brokers := broker.Shared().Bootstrap()
	all, err := verify.Generate(genConfig(seed(t), 1, events))
	if err != nil {
		t.Fatal(err)
	}
	before := all[:events/2]
	if err := verify.Produce(ctx, brokers, in, before, 1); err != nil {
		t.Fatal(err)
	}
	job := newJob(t, jobSpec(t, in, out, 1, weir.StartSpec{Mode: weir.StartEarliest}))
	done := start(ctx, job)

	// The windows the first half closes (the watermark trails its newest
	// event time by the job's 200 ms out-of-orderness) are written first.
	maxTS := int64(0)
	for _, e := range before {
		maxTS = max(maxTS, e.TS)
	}
	closed := verify.ExpectedBefore(verify.Expected(before, windowSize), maxTS-200)
	waitFor(t, done, fmt.Sprintf("the %d windows the first half closes", len(closed)), func() bool {
		st := job.Stats()
		return st.RecordsIn >= int64(len(before)) && st.ResultsOut >= int64(len(closed))
	})

	const year2500 = 16725225600000 // 2500-01-01T00:00:00Z
	offset, err := produceRaw(ctx, brokers, in, 0, []byte("u1"),
		[]byte(fmt.Sprintf(`{"user":"u1","ts":%d,"amount":1,"seq":-1}`, year2500)))
	if err != nil {
		t.Fatal(err)
	}
	if err := verify.Produce(ctx, brokers, in, all[events/2:], 1); err != nil {
		t.Fatal(err)
	}
	t.Logf("record from the year 2500 at %s partition 0 offset %d", in, offset)
	job.Drain() // without the bound the job ends here, every later record late
	err = wait(t, done)
	st := job.Stats()
	t.Logf("stats: %+v", st)
	if err == nil {
		t.Fatalf("Run returned nil; want an error for the record from the year 2500 at %s/0 offset %d (stats %+v)", in, offset, st)
	}
	msg := err.Error()
	t.Logf("error: %s", msg)
	for _, want := range []string{
		fmt.Sprintf("bad record at %s/0 offset %d: ", in, offset),
		fmt.Sprintf("event time %d (2500-01-01T00:00:00Z) is ", year2500),
		"ahead of the processing clock, beyond window.max_future (1h0m0s); fix the producer's timestamps or raise window.max_future",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not say %q", want)
		}
	}
	if strings.ContainsAny(msg, "\r\n") {
		t.Errorf("error is not one line: %q", msg)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		t.Errorf("the job ended by its context, not by the record: %v", err)
	}
	if st.BadRecords != 1 || st.LateDropped != 0 || st.RecordsIn != int64(len(before)) {
		t.Errorf("stats %+v, want 1 bad record, none late, the %d records before it in", st, len(before))
	}
	got, err := verify.ReadResults(ctx, brokers, out, verify.ReadCommitted)
	if err != nil {
		t.Fatal(err)
	}
	v := verify.Compare(len(before), closed, got)
	t.Log(v.String())
	if !v.OK {
		t.Fatalf("the output is not the %d windows closed before the record: %s", len(closed), v.Report())
	}

	// Without the record from 2500, the same input gives every window.
	in2, out2 := topic(t, 1), topic(t, 1)
	if err := verify.Produce(ctx, brokers, in2, all, 1); err != nil {
		t.Fatal(err)
	}
	job2 := newJob(t, jobSpec(t, in2, out2, 1, weir.StartSpec{Mode: weir.StartEarliest}))
	job2.Drain()
	if err := wait(t, start(ctx, job2)); err != nil {
		t.Fatalf("Run without the record from 2500: %v", err)
	}
	checkOutput(t, ctx, job2, out2, all)
}
