package weir_test

import (
	"fmt"
	"strings"
	"time"

	"github.com/weirstream/weir"
)

// Order is an example record: the JSON {"id":"o1","customer":"c7","cents":1250,"ts":1714564800000}.
type Order struct {
	ID       string `json:"id"`
	Customer string `json:"customer"`
	Cents    int64  `json:"cents"`
	TS       int64  `json:"ts"`
}

// BigOrder is what ExampleNewEnv writes.
type BigOrder struct {
	ID       string  `json:"id"`
	Customer string  `json:"customer"`
	Euros    float64 `json:"euros"`
}

// A job of stateless operators: read orders, keep the big ones, convert
// them, and write them to another topic, exactly once. Build checks the
// graph and the settings without connecting to Kafka; Run (or Env.Run)
// would run it.
func ExampleNewEnv() {
	env := weir.NewEnv("big-orders",
		weir.Brokers("127.0.0.1:9092"),
		weir.Parallelism(2),
		weir.Checkpoints(time.Second, "checkpoints/big-orders"),
		weir.Guarantee(weir.ExactlyOnce))

	orders := weir.FromKafka(env, "orders", weir.JSON[Order](), weir.SourceUID("orders"), weir.FromEarliest())
	big := weir.Filter(orders, func(o Order) bool { return o.Cents >= 100_000 })
	euros := weir.Map(big, func(o Order) BigOrder {
		return BigOrder{ID: o.ID, Customer: o.Customer, Euros: float64(o.Cents) / 100}
	})
	weir.ToKafka(euros, "big-orders", weir.KeyedJSON(func(b BigOrder) string { return b.Customer }), weir.SinkUID("big-orders"))

	job, err := env.Build()
	if err != nil {
		fmt.Println(err)
		return
	}
	s := job.Spec()
	fmt.Printf("job %s: parallelism %d, delivery %s, checkpoint every %v\n", s.Name, s.Parallelism, s.Delivery, s.Checkpoint.Interval)
	// Output:
	// job big-orders: parallelism 2, delivery exactly-once, checkpoint every 1s
}

// dedup passes on the first order of each id and drops the repeats:
// a KeyedProcessFunction with a ValueState per id that expires a day after
// it was written.
type dedup struct {
	seen *weir.ValueState[bool]
}

func (d *dedup) Open(ctx *weir.OpenContext) error {
	var err error
	d.seen, err = weir.ValueStateOf[bool](ctx, "seen", weir.WithTTL(24*time.Hour))
	return err
}

func (d *dedup) OnElement(ctx *weir.Context[Order], o Order) error {
	if _, ok := d.seen.Value(); ok {
		return nil // a repeat of an order seen within a day
	}
	d.seen.Update(true)
	ctx.Emit(o)
	return nil
}

func (d *dedup) OnTimer(ctx *weir.Context[Order], ts int64) error { return nil }

// A keyed Process: the stream is keyed by order id, and each id's state
// says whether it has been seen. The Process and the source and sink have
// UIDs: they name their state in checkpoints, so a changed program still
// restores it.
func ExampleProcess() {
	env := weir.NewEnv("dedup-orders", weir.Brokers("127.0.0.1:9092"),
		weir.Checkpoints(10*time.Second, "checkpoints/dedup-orders"), weir.Guarantee(weir.ExactlyOnce))
	orders := weir.FromKafka(env, "orders", weir.JSON[Order](), weir.SourceUID("orders"),
		weir.EventTime(func(o Order) int64 { return o.TS }, 5*time.Second))
	unique := weir.Process(weir.KeyBy(orders, func(o Order) string { return o.ID }), &dedup{}, weir.UID("dedup"))
	weir.ToKafka(unique, "unique-orders", weir.JSON[Order](), weir.SinkUID("unique-orders"))

	if _, err := env.Build(); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("built")

	// Two operators with one id are refused when the graph is built.
	env = weir.NewEnv("twice", weir.Brokers("127.0.0.1:9092"))
	orders = weir.FromKafka(env, "orders", weir.JSON[Order](), weir.SourceUID("orders"))
	byID := weir.KeyBy(orders, func(o Order) string { return o.ID })
	weir.ToKafka(weir.Process(byID, &dedup{}, weir.UID("dedup")), "a", weir.JSON[Order]())
	weir.ToKafka(weir.Process(byID, &dedup{}, weir.UID("dedup")), "b", weir.JSON[Order]())
	_, err := env.Build()
	fmt.Println(err)
	// Output:
	// built
	// weir: two operators have the id "dedup" (a process and a process); give each its own weir.UID
}

// Invalid is a record that failed validation.
type Invalid struct {
	Record string `json:"record"`
	Reason string `json:"reason"`
}

// A Transform sends the records it cannot use to a side output, which is
// written to a topic of its own; the valid orders go on.
func ExampleSideOutput() {
	env := weir.NewEnv("validate-orders", weir.Brokers("127.0.0.1:9092"))
	invalid := weir.NewOutputTag[Invalid]("invalid")

	lines := weir.FromKafka(env, "raw-orders", weir.String(), weir.SourceUID("raw-orders"))
	orders := weir.Transform(lines, func(ctx *weir.Context[Order], line string) error {
		// "id,customer,cents"
		f := strings.Split(line, ",")
		if len(f) != 3 || f[0] == "" {
			invalid.Emit(ctx, Invalid{Record: line, Reason: "want id,customer,cents"})
			return nil
		}
		var cents int64
		if _, err := fmt.Sscan(f[2], &cents); err != nil {
			invalid.Emit(ctx, Invalid{Record: line, Reason: "cents: " + err.Error()})
			return nil
		}
		ctx.Emit(Order{ID: f[0], Customer: f[1], Cents: cents, TS: ctx.Timestamp()})
		return nil
	})
	weir.ToKafka(orders, "orders", weir.JSON[Order](), weir.SinkUID("orders"))
	weir.ToKafka(weir.SideOutput(orders, invalid), "invalid-orders", weir.JSON[Invalid](), weir.SinkUID("invalid-orders"))

	if _, err := env.Build(); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("built")

	// Side outputs come from the stream a Transform or Process returns,
	// not from the operators after it.
	env = weir.NewEnv("wrong", weir.Brokers("127.0.0.1:9092"))
	lines = weir.FromKafka(env, "raw-orders", weir.String())
	upper := weir.Map(lines, strings.ToUpper)
	weir.ToKafka(weir.SideOutput(upper, invalid), "invalid-orders", weir.JSON[Invalid]())
	_, err := env.Build()
	fmt.Println(err)
	// Output:
	// built
	// weir: SideOutput("invalid"): operator map-1 has no side outputs; side outputs come from Process and Transform
}

// Payment is an example record: the JSON {"order":"o1","cents":1250,"ts":1714564801000}.
type Payment struct {
	Order string `json:"order"`
	Cents int64  `json:"cents"`
	TS    int64  `json:"ts"`
}

// Event-time windows and joins: the spend of each customer over the last
// hour every ten minutes, with late orders kept in a topic of their own;
// and each order with the payments that came within 10 minutes of it.
func ExampleWindow() {
	env := weir.NewEnv("orders-windows", weir.Brokers("127.0.0.1:9092"),
		weir.Checkpoints(time.Second, "checkpoints/orders-windows"), weir.Guarantee(weir.ExactlyOnce))
	orders := weir.FromKafka(env, "orders", weir.JSON[Order](), weir.SourceUID("orders"),
		weir.EventTime(func(o Order) int64 { return o.TS }, 5*time.Second))
	payments := weir.FromKafka(env, "payments", weir.JSON[Payment](), weir.SourceUID("payments"),
		weir.EventTime(func(p Payment) int64 { return p.TS }, 5*time.Second))

	late := weir.NewOutputTag[Order]("late-orders")
	spend := weir.Aggregate(
		weir.Window(weir.KeyBy(orders, func(o Order) string { return o.Customer }),
			weir.SlidingWindows(time.Hour, 10*time.Minute)).
			AllowedLateness(time.Minute).
			SideOutputLateData(late),
		weir.SummaryOf(func(o Order) float64 { return float64(o.Cents) / 100 }),
		weir.UID("spend-per-customer"))
	weir.ToKafka(spend, "spend-per-customer", weir.JSON[weir.WindowResult[weir.Summary]](), weir.SinkUID("spend-out"))
	weir.ToKafka(weir.SideOutput(spend, late), "late-orders", weir.JSON[Order](), weir.SinkUID("late-out"))

	type paid struct {
		Order   Order   `json:"order"`
		Payment Payment `json:"payment"`
	}
	paidOrders := weir.IntervalJoin(
		weir.KeyBy(orders, func(o Order) string { return o.ID }),
		weir.KeyBy(payments, func(p Payment) string { return p.Order }),
		0, 10*time.Minute,
		func(o Order, p Payment) paid { return paid{o, p} },
		weir.UID("paid-orders"))
	weir.ToKafka(paidOrders, "paid-orders", weir.JSON[paid](), weir.SinkUID("paid-out"))

	if _, err := env.Build(); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("built")
	// Output:
	// built
}
