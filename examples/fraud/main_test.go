package main

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirstream/weir/examples/internal/extest"
)

var seedFlag = flag.Int64("seed", 0, "seed of the generated input (0: from the clock)")

const partitions = 4

// TestFraudDetection runs the job on an in-process broker (kfake),
// exactly-once with parallelism 2 and a bounded source, over generated
// transactions, and compares the alerts read with read_committed with the
// alerts computed here by a plain loop over each account's transactions.
func TestFraudDetection(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("seed %d (go test -run TestFraudDetection -seed %d repeats this input)", seed, seed)
	txs := generate(rand.New(rand.NewPCG(uint64(seed), 0)), 200)
	want := expectedAlerts(txs)
	if len(want) == 0 {
		t.Fatal("the generated input raises no alert")
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	brokers := extest.StartKafka(t, partitions, "transactions", "alerts")
	recs := make([]*kgo.Record, len(txs))
	for i, tx := range txs {
		v, err := json.Marshal(tx)
		if err != nil {
			t.Fatal(err)
		}
		key := strconv.FormatInt(tx.AccountID, 10)
		recs[i] = &kgo.Record{Topic: "transactions", Key: []byte(key), Value: v, Partition: partitionOf(key)}
	}
	extest.Produce(ctx, t, brokers, recs)

	job, err := buildJob(config{
		Brokers: brokers, Transactions: "transactions", Alerts: "alerts",
		CheckpointDir: t.TempDir(), CheckpointInterval: 50 * time.Millisecond,
		Parallelism: 2, ExactlyOnce: true, Bounded: true, OutOfOrderness: time.Second,
		Logger: extest.Logger(t),
	}).Build()
	if err != nil {
		t.Fatal(err)
	}
	if err := job.Run(ctx); err != nil {
		t.Fatal(err)
	}
	st := job.Stats()
	t.Logf("stats: records in %d, results out %d, checkpoints %d", st.RecordsIn, st.ResultsOut, st.Checkpoints)
	if st.RecordsIn != int64(len(txs)) {
		t.Errorf("the job read %d transactions, want %d", st.RecordsIn, len(txs))
	}

	got := extest.ReadJSON[Alert](ctx, t, brokers, "alerts")
	byAccountTime := func(a, b Alert) int {
		return cmp.Or(cmp.Compare(a.AccountID, b.AccountID), cmp.Compare(a.TS, b.TS))
	}
	slices.SortFunc(got, byAccountTime)
	slices.SortFunc(want, byAccountTime)
	if !slices.Equal(got, want) {
		t.Errorf("%d alerts, want %d", len(got), len(want))
		for i := 0; i < max(len(got), len(want)) && i < 10; i++ {
			var g, w Alert
			if i < len(got) {
				g = got[i]
			}
			if i < len(want) {
				w = want[i]
			}
			t.Errorf("  got %+v, want %+v", g, w)
		}
		return
	}
	t.Logf("%d transactions of 200 accounts, %d alerts, each exactly once", len(txs), len(got))
}

// generate returns the transactions of accounts accounts in the order they
// are produced: by time (ties by account), so every partition is in time
// order. Each account's times strictly increase. The first transactions of
// an account follow one of a few patterns around the thresholds; the rest
// are random, with gaps of one second to two minutes.
func generate(rng *rand.Rand, accounts int) []Transaction {
	const start = 1_714_564_800_000
	var txs []Transaction
	for a := 1; a <= accounts; a++ {
		id := int64(1000 + a)
		ts := start + rng.Int64N(oneMinute)
		add := func(gap int64, amount float64) {
			ts += gap
			txs = append(txs, Transaction{AccountID: id, Amount: amount, TS: ts})
		}
		switch a % 6 {
		case 0: // small, then large 30 s later: alert
			add(1, 0.5)
			add(30_000, 725.30)
		case 1: // small, then large 59.999 s later: alert
			add(1, 0.99)
			add(59_999, 500.01)
		case 2: // small, then large exactly a minute later: no alert
			add(1, 0.01)
			add(60_000, 999)
		case 3: // small, then large after more than a minute: no alert
			add(1, 0.25)
			add(61_000+rng.Int64N(60_000), 1500)
		case 4: // small, normal, large: the normal one clears the flag
			add(1, 0.75)
			add(1_000, 42)
			add(1_000, 800)
		case 5: // the thresholds themselves are neither small nor large
			add(1, 1.00)
			add(10_000, 501)
			add(1, 0.5)
			add(10_000, 500.00)
		}
		for n := 10 + rng.IntN(15); n > 0; n-- {
			gap := 1_000 + rng.Int64N(120_000)
			var cents int64
			switch r := rng.IntN(100); {
			case r < 20:
				cents = 1 + rng.Int64N(99) // small
			case r < 35:
				cents = 50_001 + rng.Int64N(200_000) // large
			default:
				cents = 100 + rng.Int64N(49_901) // 1.00 .. 500.00
			}
			add(gap, float64(cents)/100)
		}
	}
	slices.SortStableFunc(txs, func(x, y Transaction) int {
		return cmp.Or(cmp.Compare(x.TS, y.TS), cmp.Compare(x.AccountID, y.AccountID))
	})
	return txs
}

// expectedAlerts is the detector's rule as a loop: for every account, in
// time order, a transaction above 500 within a minute after one below 1
// with nothing in between is an alert.
func expectedAlerts(txs []Transaction) []Alert {
	byAccount := map[int64][]Transaction{}
	for _, tx := range txs {
		byAccount[tx.AccountID] = append(byAccount[tx.AccountID], tx)
	}
	var alerts []Alert
	for _, list := range byAccount {
		slices.SortFunc(list, func(x, y Transaction) int { return cmp.Compare(x.TS, y.TS) })
		for i := 1; i < len(list); i++ {
			prev, cur := list[i-1], list[i]
			if prev.Amount < 1 && cur.Amount > 500 && cur.TS-prev.TS < 60_000 {
				alerts = append(alerts, Alert{AccountID: cur.AccountID, TS: cur.TS, Amount: cur.Amount})
			}
		}
	}
	return alerts
}

// partitionOf spreads accounts over the partitions, each account on one.
func partitionOf(key string) int32 {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int32(h.Sum32() % partitions)
}
