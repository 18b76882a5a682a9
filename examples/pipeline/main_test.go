package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirstream/weir/examples/internal/extest"
)

var seedFlag = flag.Int64("seed", 0, "seed of the generated input (0: from the clock)")

const partitions = 4

// TestPipeline runs the job on an in-process broker (kfake), exactly-once
// with parallelism 2 and a bounded source, over generated clicks of every
// kind, and compares both output topics, read with read_committed, with
// what the generator says each click must give.
func TestPipeline(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("seed %d (go test -run TestPipeline -seed %d repeats this input)", seed, seed)
	g := generate(rand.New(rand.NewPCG(uint64(seed), 0)), 4000)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	brokers := extest.StartKafka(t, partitions, "clicks", "out", "rejected")
	recs := make([]*kgo.Record, len(g.records))
	for i, r := range g.records {
		recs[i] = &kgo.Record{Topic: "clicks", Value: []byte(r), Partition: int32(i % partitions)}
	}
	extest.Produce(ctx, t, brokers, recs)

	job, err := buildJob(config{
		Brokers: brokers, Clicks: "clicks", Out: "out", Rejected: "rejected",
		CheckpointDir: t.TempDir(), CheckpointInterval: 50 * time.Millisecond,
		Parallelism: 2, ExactlyOnce: true, Bounded: true,
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
	if st.RecordsIn != int64(len(recs)) {
		t.Errorf("the job read %d clicks, want %d", st.RecordsIn, len(recs))
	}

	got := map[TagClick]int{}
	outs := extest.ReadJSON[TagClick](ctx, t, brokers, "out")
	for _, o := range outs {
		got[o]++
	}
	checkSame(t, "out", got, g.out)

	type rej struct{ reason, record string }
	gotRej, wantRej := map[rej]int{}, map[rej]int{}
	rejs := extest.ReadJSON[Rejected](ctx, t, brokers, "rejected")
	for _, r := range rejs {
		gotRej[rej{r.Reason, r.Record}]++
	}
	for _, r := range g.malformed {
		wantRej[rej{"malformed", r}]++
	}
	for _, r := range g.bots {
		wantRej[rej{"bot", r}]++
	}
	checkSame(t, "rejected", gotRej, wantRej)
	t.Logf("%d clicks: %d records out (%d product clicks, %d other pages), %d malformed, %d bots, each exactly once",
		len(recs), len(outs), g.productClicks, g.otherPages, len(g.malformed), len(g.bots))
}

// checkSame compares two multisets.
func checkSame[K comparable](t *testing.T, topic string, got, want map[K]int) {
	t.Helper()
	bad := 0
	for k, n := range want {
		if got[k] != n {
			if bad++; bad <= 5 {
				t.Errorf("%s: %+v %d times, want %d", topic, k, got[k], n)
			}
		}
	}
	for k, n := range got {
		if _, ok := want[k]; !ok {
			if bad++; bad <= 5 {
				t.Errorf("%s: unexpected %+v (%d times)", topic, k, n)
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%s: %d differences", topic, bad)
	}
}

// generated is the input and what it must give.
type generated struct {
	records       []string
	out           map[TagClick]int // the output records, with their counts
	malformed     []string
	bots          []string
	productClicks int
	otherPages    int
}

var (
	browsers = []struct {
		ua     string
		mobile bool
	}{
		{"Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0", false},
		{"Mozilla/5.0 (Windows NT 10.0) Chrome/126.0", false},
		{"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5) Mobile/15E148 Safari/604.1", true},
		{"Mozilla/5.0 (Linux; Android 14) Chrome/126.0 Mobile Safari/537.36", true},
	}
	bots       = []string{"Googlebot/2.1 (+http://www.google.com/bot.html)", "Mozilla/5.0 (compatible; bingbot/2.0)", "SomeCrawler/1.0", "Baiduspider", "AhrefsBOT"}
	otherPages = []string{"/", "/cart", "/search?q=shoes", "/products/", "/products/p1/reviews", "/about"}
	tagWords   = []string{"summer", "sale", "new", "mail", "retarget", "vip"}
)

// generate returns n click records in production order: about 70% clicks
// on product pages with zero to four tags written untidily (spaces, case,
// empty items), 10% clicks on other pages, 10% bots and 10% malformed
// records of several kinds.
func generate(rng *rand.Rand, n int) generated {
	g := generated{out: map[TagClick]int{}}
	const start = 1_714_564_800_000
	for i := range n {
		id := fmt.Sprintf("c%d", i)
		user := fmt.Sprintf("u%d", rng.IntN(300))
		ts := int64(start + i*60_000 + rng.IntN(60_000)) // spans several days
		b := browsers[rng.IntN(len(browsers))]
		encode := func(url, ua, tags string) string {
			v, err := json.Marshal(map[string]any{"click_id": id, "user": user, "url": url, "user_agent": ua, "ts": ts, "tags": tags})
			if err != nil {
				panic(err)
			}
			return string(v)
		}
		switch r := rng.IntN(100); {
		case r < 10:
			var rec string
			switch rng.IntN(6) {
			case 0:
				rec = "not json at all"
			case 1:
				rec = fmt.Sprintf(`{"click_id":%q,"user":`, id) // cut off
			case 2:
				rec = fmt.Sprintf(`{"click_id":%q,"url":"/products/p1","ts":%d}`, id, ts) // no user
			case 3:
				rec = fmt.Sprintf(`{"click_id":%q,"user":%q,"url":"/products/p1","ts":"yesterday"}`, id, user)
			case 4:
				rec = "null"
			case 5:
				rec = fmt.Sprintf(`[%q]`, id)
			}
			g.records = append(g.records, rec)
			g.malformed = append(g.malformed, rec)
		case r < 20:
			rec := encode(fmt.Sprintf("/products/p%d", rng.IntN(50)), bots[rng.IntN(len(bots))], "sale")
			g.records = append(g.records, rec)
			g.bots = append(g.bots, rec)
		case r < 30:
			g.records = append(g.records, encode(otherPages[rng.IntN(len(otherPages))], b.ua, "sale,new"))
			g.otherPages++
		default:
			product := fmt.Sprintf("p%d", rng.IntN(50))
			url := "/products/" + product
			if rng.IntN(3) == 0 {
				url += "?ref=mail&x=1"
			}
			var written []string
			tags := rng.Perm(len(tagWords))[:rng.IntN(5)]
			for _, k := range tags {
				w := tagWords[k]
				if rng.IntN(3) == 0 {
					w = strings.ToUpper(w[:1]) + w[1:]
				}
				written = append(written, strings.Repeat(" ", rng.IntN(2))+w+strings.Repeat(" ", rng.IntN(2)))
				if rng.IntN(5) == 0 {
					written = append(written, " ")
				}
				day := time.UnixMilli(ts).UTC().Format("2006-01-02")
				g.out[TagClick{ClickID: id, User: user, Product: product, Day: day, Mobile: b.mobile, Tag: tagWords[k], TS: ts}]++
			}
			g.records = append(g.records, encode(url, b.ua, strings.Join(written, ",")))
			g.productClicks++
		}
	}
	return g
}
