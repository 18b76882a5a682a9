// Command pipeline is a stateless weir dataflow: it cleans a stream of
// click events and writes one record per product page click and campaign
// tag, routing the clicks it cannot use to a second topic.
//
//	go run ./examples/pipeline -brokers 127.0.0.1:9092 -clicks clicks -out product-tag-clicks -rejected rejected-clicks
//
// A click is a JSON object such as
//
//	{"click_id":"c42","user":"u7","url":"/products/p19?ref=mail","user_agent":"Mozilla/5.0 (iPhone) Mobile","ts":1714564800000,"tags":"Summer, sale,,new"}
//
// The graph, in the order the operators run (operator chaining: all four
// run as function calls inside the source's actor, one per subtask; the
// two sinks are actors of their own):
//
//  1. Transform parses the record. A record that is not such an object, or
//     lacks click_id, user, url or ts, goes to the side output "rejected"
//     with reason "malformed"; a click whose user agent names a bot,
//     crawler or spider goes there with reason "bot". Both are written to
//     -rejected as {"reason":..,"detail":..,"record":<the record as read>}.
//  2. Filter keeps the clicks on product pages (/products/<id>).
//  3. Map enriches a click: the product id, the UTC day of ts, whether
//     the user agent is a mobile one, and the tags, trimmed and lower case.
//  4. FlatMap writes one record per tag (none for a click without tags) to
//     -out, keyed by product:
//     {"click_id":"c42","user":"u7","product":"p19","day":"2024-05-01","mobile":true,"tag":"summer","ts":1714564800000}
//
// Without -bounded the job runs until SIGINT or SIGTERM, which cancel it;
// with -bounded it reads the clicks up to the end the topic has at the
// start and exits. Either way it prints the job's counters last.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/weirstream/weir"
)

// Click is a parsed click event.
type Click struct {
	ClickID   string `json:"click_id"`
	User      string `json:"user"`
	URL       string `json:"url"`
	UserAgent string `json:"user_agent"`
	TS        int64  `json:"ts"`
	Tags      string `json:"tags"` // comma-separated campaign tags
}

// Rejected is a record the pipeline cannot use, as it was read.
type Rejected struct {
	Reason string `json:"reason"` // "malformed" or "bot"
	Detail string `json:"detail"`
	Record string `json:"record"`
}

// ProductClick is a click on a product page, enriched.
type ProductClick struct {
	ClickID string
	User    string
	Product string
	Day     string // UTC, YYYY-MM-DD
	Mobile  bool
	TS      int64
	Tags    []string
}

// TagClick is the pipeline's output: a product click and one of its tags.
type TagClick struct {
	ClickID string `json:"click_id"`
	User    string `json:"user"`
	Product string `json:"product"`
	Day     string `json:"day"`
	Mobile  bool   `json:"mobile"`
	Tag     string `json:"tag"`
	TS      int64  `json:"ts"`
}

// rejected is the side output of the clicks the pipeline cannot use.
var rejected = weir.NewOutputTag[Rejected]("rejected")

// parse is the Transform: a click downstream, or a Rejected to the side.
func parse(ctx *weir.Context[Click], record string) error {
	var c Click
	if err := json.Unmarshal([]byte(record), &c); err != nil {
		rejected.Emit(ctx, Rejected{Reason: "malformed", Detail: err.Error(), Record: record})
		return nil
	}
	var missing []string
	for _, f := range []struct {
		name  string
		valid bool
	}{{"click_id", c.ClickID != ""}, {"user", c.User != ""}, {"url", c.URL != ""}, {"ts", c.TS > 0}} {
		if !f.valid {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		rejected.Emit(ctx, Rejected{Reason: "malformed", Detail: "missing " + strings.Join(missing, ", "), Record: record})
		return nil
	}
	if isBot(c.UserAgent) {
		rejected.Emit(ctx, Rejected{Reason: "bot", Detail: c.UserAgent, Record: record})
		return nil
	}
	ctx.Emit(c)
	return nil
}

func isBot(userAgent string) bool {
	ua := strings.ToLower(userAgent)
	return strings.Contains(ua, "bot") || strings.Contains(ua, "crawler") || strings.Contains(ua, "spider")
}

// productID returns the product of a product page URL, /products/<id>.
func productID(rawURL string) (string, bool) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", false
	}
	id, ok := strings.CutPrefix(u.Path, "/products/")
	if !ok || id == "" || strings.Contains(id, "/") {
		return "", false
	}
	return id, true
}

func isProductPage(c Click) bool {
	_, ok := productID(c.URL)
	return ok
}

func enrich(c Click) ProductClick {
	p, _ := productID(c.URL)
	var tags []string
	for _, t := range strings.Split(c.Tags, ",") {
		if t = strings.ToLower(strings.TrimSpace(t)); t != "" {
			tags = append(tags, t)
		}
	}
	return ProductClick{
		ClickID: c.ClickID, User: c.User, Product: p,
		Day:    time.UnixMilli(c.TS).UTC().Format(time.DateOnly),
		Mobile: strings.Contains(c.UserAgent, "Mobile"),
		TS:     c.TS, Tags: tags,
	}
}

func perTag(p ProductClick, emit func(TagClick)) {
	for _, tag := range p.Tags {
		emit(TagClick{ClickID: p.ClickID, User: p.User, Product: p.Product, Day: p.Day, Mobile: p.Mobile, Tag: tag, TS: p.TS})
	}
}

// config is what the flags set.
type config struct {
	Brokers            string
	Clicks             string // input topic
	Out                string // one record per product click and tag
	Rejected           string // malformed and bot clicks
	CheckpointDir      string // "" turns checkpoints off
	CheckpointInterval time.Duration
	Parallelism        int
	ExactlyOnce        bool
	Bounded            bool
	Logger             *slog.Logger // nil: slog.Default()
}

// buildJob builds the job's graph: clicks -> parse (side output:
// rejected) -> product pages only -> enrich -> one record per tag.
func buildJob(cfg config) *weir.Env {
	opts := []weir.EnvOption{weir.Brokers(cfg.Brokers), weir.Parallelism(cfg.Parallelism)}
	if cfg.CheckpointDir != "" {
		opts = append(opts, weir.Checkpoints(cfg.CheckpointInterval, cfg.CheckpointDir))
	}
	if cfg.ExactlyOnce {
		opts = append(opts, weir.Guarantee(weir.ExactlyOnce))
	}
	if cfg.Logger != nil {
		opts = append(opts, weir.JobOptions(weir.WithLogger(cfg.Logger)))
	}
	env := weir.NewEnv("click-pipeline", opts...)

	src := []weir.SourceOption{weir.SourceUID("clicks"), weir.FromEarliest()}
	if cfg.Bounded {
		src = append(src, weir.BoundedAtLatest())
	}
	// String, not JSON[Click]: a record that is not JSON must reach parse
	// (a format's Decode error stops the job).
	records := weir.FromKafka(env, cfg.Clicks, weir.String(), src...)
	clicks := weir.Transform(records, parse, weir.Name("parse"))
	products := weir.Filter(clicks, isProductPage, weir.Name("product pages"))
	enriched := weir.Map(products, enrich, weir.Name("enrich"))
	tagged := weir.FlatMap(enriched, perTag, weir.Name("per tag"))

	weir.ToKafka(tagged, cfg.Out, weir.KeyedJSON(func(t TagClick) string { return t.Product }), weir.SinkUID("tag-clicks"))
	weir.ToKafka(weir.SideOutput(clicks, rejected), cfg.Rejected, weir.JSON[Rejected](), weir.SinkUID("rejected"))
	return env
}

// parseFlags reads the command line.
func parseFlags(args []string, stderr io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("pipeline", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Brokers, "brokers", "127.0.0.1:9092", "Kafka bootstrap servers, host:port[,host:port...]")
	fs.StringVar(&cfg.Clicks, "clicks", "clicks", "topic to read click events from")
	fs.StringVar(&cfg.Out, "out", "product-tag-clicks", "topic to write one record per product click and tag to")
	fs.StringVar(&cfg.Rejected, "rejected", "rejected-clicks", "topic to write malformed and bot clicks to")
	fs.StringVar(&cfg.CheckpointDir, "checkpoint-dir", "checkpoints/pipeline", "directory of the job's checkpoints (\"\": no checkpoints)")
	fs.DurationVar(&cfg.CheckpointInterval, "checkpoint-interval", time.Second, "time between checkpoints")
	fs.IntVar(&cfg.Parallelism, "parallelism", 1, "subtasks of every operator, 1 to 128")
	fs.BoolVar(&cfg.ExactlyOnce, "exactly-once", true, "write in Kafka transactions committed on checkpoints (needs -checkpoint-dir)")
	fs.BoolVar(&cfg.Bounded, "bounded", false, "read to the end the topic has at the start, then stop")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if cfg.ExactlyOnce && cfg.CheckpointDir == "" {
		return cfg, errors.New("-exactly-once needs -checkpoint-dir (or -exactly-once=false)")
	}
	return cfg, nil
}

// run builds and runs the job and prints its counters to stdout.
func run(ctx context.Context, cfg config, stdout io.Writer) error {
	job, err := buildJob(cfg).Build()
	if err != nil {
		return err
	}
	err = job.Run(ctx)
	st := job.Stats()
	fmt.Fprintf(stdout, "clicks in %d, records out %d (both topics), checkpoints %d (last %d), restored from %d, restarts %d\n",
		st.RecordsIn, st.ResultsOut, st.Checkpoints, st.LastCheckpoint, st.RestoredFrom, st.Restarts)
	return err
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case err != nil:
		fmt.Fprintln(os.Stderr, "pipeline:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, cfg, os.Stdout)
	stopped := ctx.Err() != nil
	stop()
	switch {
	case err != nil && stopped:
		fmt.Fprintln(os.Stderr, "pipeline: stopped by signal")
	case err != nil:
		fmt.Fprintln(os.Stderr, "pipeline:", strings.ReplaceAll(err.Error(), "\n", "; "))
		os.Exit(1)
	}
}
