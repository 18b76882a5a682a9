package verify

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strconv"
	"time"
	"unicode/utf8"
)

// Event is one input record of the verified job. Its wire form is the JSON
// object {"user":"u17","ts":1764028800123,"amount":17,"seq":42}; the Kafka
// record key is the user.
type Event struct {
	// Key is the user, the job's key field ("user").
	Key string
	// TS is the event time in milliseconds since the Unix epoch ("ts").
	TS int64
	// Amount is the value the job sums ("amount").
	Amount int64
	// Seq is the event's position in the generated sequence ("seq"); it
	// makes every event distinct.
	Seq int64
}

// JSON returns the event's wire form.
func (e Event) JSON() []byte {
	return e.AppendJSON(make([]byte, 0, 64+len(e.Key)))
}

// AppendJSON appends the event's wire form to dst and returns the result.
func (e Event) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"user":`...)
	dst = appendJSONString(dst, e.Key)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, e.TS, 10)
	dst = append(dst, `,"amount":`...)
	dst = strconv.AppendInt(dst, e.Amount, 10)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendInt(dst, e.Seq, 10)
	return append(dst, '}')
}

// appendJSONString appends s as a JSON string. Plain ASCII without quotes,
// backslashes or control characters (every generated key) takes a fast
// path; anything else goes through encoding/json.
func appendJSONString(dst []byte, s string) []byte {
	plain := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf || c == '<' || c == '>' || c == '&' {
			plain = false
			break
		}
	}
	if plain {
		dst = append(dst, '"')
		dst = append(dst, s...)
		return append(dst, '"')
	}
	b, err := json.Marshal(s)
	if err != nil { // cannot happen for a string
		return append(dst, `""`...)
	}
	return append(dst, b...)
}

type wireEvent struct {
	User   *string `json:"user"`
	TS     *int64  `json:"ts"`
	Amount *int64  `json:"amount"`
	Seq    *int64  `json:"seq"`
}

// ParseEvent parses an event's wire form. Every field must be present and
// of the right type; unknown fields are ignored.
func ParseEvent(b []byte) (Event, error) {
	var w wireEvent
	if err := decodeObject(b, &w); err != nil {
		return Event{}, fmt.Errorf("verify: parse event %s: %w", quoteShort(b), err)
	}
	var missing []string
	if w.User == nil {
		missing = append(missing, "user")
	}
	if w.TS == nil {
		missing = append(missing, "ts")
	}
	if w.Amount == nil {
		missing = append(missing, "amount")
	}
	if w.Seq == nil {
		missing = append(missing, "seq")
	}
	if len(missing) > 0 {
		return Event{}, fmt.Errorf("verify: parse event %s: %w %q", quoteShort(b), ErrMissingField, missing)
	}
	return Event{Key: *w.User, TS: *w.TS, Amount: *w.Amount, Seq: *w.Seq}, nil
}

// ErrMissingField is wrapped by ParseEvent and ParseResult when a required
// field is absent or null.
var ErrMissingField = errors.New("verify: missing or null field")

// decodeObject decodes exactly one JSON object from b into v.
func decodeObject(b []byte, v any) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return errors.New("not a JSON object")
	}
	return json.Unmarshal(b, v)
}

// quoteShort quotes b for an error message, cut to a readable length.
func quoteShort(b []byte) string {
	const max = 120
	if len(b) > max {
		return strconv.Quote(string(b[:max])) + "..."
	}
	return strconv.Quote(string(b))
}

// Partition returns the Kafka partition the generator assigns to e: the
// FNV-1a hash of the key modulo partitions. Events of one key therefore stay
// on one partition, in order. partitions < 1 is treated as 1.
func Partition(e Event, partitions int) int32 {
	if partitions <= 1 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(e.Key))
	return int32(h.Sum32() % uint32(partitions))
}

// GenConfig configures Generate and NewGenerator.
type GenConfig struct {
	// Seed makes the sequence reproducible: equal configs give equal events.
	Seed int64
	// Keys is the number of distinct keys, "u0" .. "u{Keys-1}" (>= 1).
	// Lower-numbered keys are more frequent: key k is drawn with
	// probability (2(Keys-k)-1)/Keys², about twice the mean for "u0" and
	// almost never for the last key.
	Keys int
	// Partitions is the number of partitions events are spread over with
	// Partition (>= 1).
	Partitions int
	// Events is the number of events Generate returns (>= 0). The
	// streaming Generator ignores it.
	Events int
	// Start is the event time in ms since the epoch of the first event (>= 0).
	Start int64
	// Step is how far event time advances per event (>= 0). It may be
	// below a millisecond: with Step = 100µs ten events share one ms.
	Step time.Duration
	// OutOfOrderness is the largest lateness of an event relative to the
	// newest event time already generated for the same partition (>= 0,
	// whole milliseconds count). It must not exceed the job's bound, or
	// the job drops late events that Expected counts.
	OutOfOrderness time.Duration
}

// OutOfOrderOneIn says which share of events is generated late when
// GenConfig.OutOfOrderness is at least one millisecond: one in
// OutOfOrderOneIn, each late by 1 ms .. OutOfOrderness.
const OutOfOrderOneIn = 4

// AmountMax is the largest generated Amount; amounts are 1..AmountMax.
const AmountMax = 100

func (c GenConfig) validate() error {
	switch {
	case c.Keys < 1:
		return fmt.Errorf("verify: generator: keys %d, want >= 1", c.Keys)
	case c.Partitions < 1:
		return fmt.Errorf("verify: generator: partitions %d, want >= 1", c.Partitions)
	case c.Events < 0:
		return fmt.Errorf("verify: generator: events %d, want >= 0", c.Events)
	case c.Start < 0:
		return fmt.Errorf("verify: generator: start %d, want >= 0", c.Start)
	case c.Step < 0:
		return fmt.Errorf("verify: generator: step %v, want >= 0", c.Step)
	case c.OutOfOrderness < 0:
		return fmt.Errorf("verify: generator: out-of-orderness %v, want >= 0", c.OutOfOrderness)
	}
	return nil
}

// Generator produces the event sequence of a GenConfig one event at a time,
// for live generation at a chosen rate. It is not safe for concurrent use.
type Generator struct {
	cfg    GenConfig
	rng    *rand.Rand
	keys   []string
	n      int64 // events generated so far
	oooMs  int64
	stepNs int64
}

// NewGenerator returns a Generator for c, or an error naming the invalid
// field.
func NewGenerator(c GenConfig) (*Generator, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	keys := make([]string, c.Keys)
	for i := range keys {
		keys[i] = "u" + strconv.Itoa(i)
	}
	return &Generator{
		cfg:    c,
		rng:    rand.New(rand.NewPCG(uint64(c.Seed), 0x9e3779b97f4a7c15)),
		keys:   keys,
		oooMs:  c.OutOfOrderness.Milliseconds(),
		stepNs: int64(c.Step),
	}, nil
}

// Partitions returns the configured partition count, the argument to pass to
// Partition for this generator's events.
func (g *Generator) Partitions() int { return g.cfg.Partitions }

// Next returns the next event. The i-th event (from 0) has Seq i and, unless
// it is late, event time Start + i*Step (in whole ms). A late event is up to
// OutOfOrderness behind that, never before Start. Since no event is ahead of
// that clock, a late event is also at most OutOfOrderness behind every
// earlier event of its partition.
func (g *Generator) Next() Event {
	i := g.n
	g.n++
	// Event time of the clock, computed without overflow for any
	// realistic i*Step: whole steps per ms first.
	base := g.cfg.Start + mulDivMs(i, g.stepNs)
	ts := base
	if g.oooMs > 0 && g.rng.IntN(OutOfOrderOneIn) == 0 {
		ts = base - 1 - g.rng.Int64N(g.oooMs)
		if ts < g.cfg.Start {
			ts = g.cfg.Start
		}
	}
	k := min(g.rng.IntN(len(g.keys)), g.rng.IntN(len(g.keys)))
	return Event{
		Key:    g.keys[k],
		TS:     ts,
		Amount: 1 + g.rng.Int64N(AmountMax),
		Seq:    i,
	}
}

// mulDivMs returns i*stepNs/1e6, saturating instead of overflowing.
func mulDivMs(i, stepNs int64) int64 {
	const ms = int64(time.Millisecond)
	q, r := stepNs/ms, stepNs%ms
	// i*q + i*r/ms, each part checked.
	if q != 0 && i > (1<<62)/q {
		return 1 << 62
	}
	whole := i * q
	if r != 0 && i > (1<<62)/r {
		return 1 << 62
	}
	return whole + i*r/ms
}

// Generate returns the c.Events events of c, in the order they are to be
// produced: per partition (Partition(e, c.Partitions)), every event's TS
// is at least the largest earlier TS of that partition minus
// c.OutOfOrderness.
func Generate(c GenConfig) ([]Event, error) {
	g, err := NewGenerator(c)
	if err != nil {
		return nil, err
	}
	out := make([]Event, c.Events)
	for i := range out {
		out[i] = g.Next()
	}
	return out, nil
}
