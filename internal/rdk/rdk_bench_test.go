package rdk

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// The consume and produce paths per record, through the client's own calls
// and through the shim, against the embedded broker (kfake): records of
// about 100 bytes, like the benchmark's events. One op is one record, so
// ns/op and allocs/op are per record.
//
//	go test -run '^$' -bench . -benchmem ./internal/rdk/

func benchValue(i int) []byte {
	return fmt.Appendf(nil, `{"user":"u%04d","seq":%d,"ts":1700000000000,"amount":%d.5,"pad":"xxxxxxxxxxxxxxxxxxxxxxxx"}`, i%1000, i, i%100)
}

// fill writes n records to partition 0 of the broker's topic.
func fill(b *testing.B, brokers string, n int) {
	b.Helper()
	p := producer(b, brokers, kafka.ConfigMap{"queue.buffering.max.messages": 1_000_000, "linger.ms": 20})
	defer p.Close()
	tp, err := AttachTopic(p, topic)
	if err != nil {
		b.Fatal(err)
	}
	defer tp.Close()
	for done := 0; done < n; {
		k, err := tp.Produce(0, n-done, func(i int) ([]byte, []byte) { return nil, benchValue(done + i) })
		done += k
		if err != nil {
			p.Flush(100)
		}
	}
	if left := p.Flush(60_000); left != 0 {
		b.Fatalf("%d records not delivered", left)
	}
}

func BenchmarkConsume(b *testing.B) {
	// shim-reuse is shim with ReuseBuffer, as a source whose decoder
	// copies what it keeps reads; routed-reuse is that with the partitions
	// routed to the shim's fetch queue (Route), as the source reads.
	for _, path := range []string{"client", "shim", "shim-reuse", "routed-reuse"} {
		b.Run(path, func(b *testing.B) {
			brokers := cluster(b)
			fill(b, brokers, b.N)
			c := unassigned(b, brokers, kafka.ConfigMap{"enable.partition.eof": false})
			defer c.Close()
			// Wait for the first record outside the timing.
			sc, err := AttachConsumer(c)
			if err != nil {
				b.Fatal(err)
			}
			defer sc.Close()
			if path == "routed-reuse" {
				if err := sc.Route(topic, []int32{0, 1}); err != nil {
					b.Fatal(err)
				}
			}
			assignBoth(b, c)
			if path == "shim-reuse" || path == "routed-reuse" {
				sc.ReuseBuffer()
			}
			var batch []Entry
			read, bytes := 0, 0
			deadline := time.Now().Add(60 * time.Second)
			for read == 0 {
				if batch, err = sc.Poll(100*time.Millisecond, 1, batch[:0]); err != nil {
					b.Fatal(err)
				}
				for _, e := range batch {
					read++
					bytes += len(e.Value)
				}
				if time.Now().After(deadline) {
					b.Fatal("no record within 60s")
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for read < b.N {
				if time.Now().After(deadline) {
					b.Fatalf("read %d of %d records within 60s", read, b.N)
				}
				if path != "client" {
					batch, err = sc.Poll(100*time.Millisecond, 4096, batch[:0])
					if err != nil {
						b.Fatal(err)
					}
					for _, e := range batch {
						if e.Kind == Record {
							read++
							bytes += len(e.Value)
						}
					}
					continue
				}
				if m, ok := c.Poll(100).(*kafka.Message); ok {
					read++
					bytes += len(m.Value)
				}
			}
			b.StopTimer()
			if bytes == 0 {
				b.Fatal("no bytes read")
			}
		})
	}
}

func BenchmarkProduce(b *testing.B) {
	for _, path := range []string{"client", "shim"} {
		b.Run(path, func(b *testing.B) {
			brokers := cluster(b)
			// A queue large enough for every record: the enqueue is timed,
			// not the broker.
			p := producer(b, brokers, kafka.ConfigMap{"queue.buffering.max.messages": 10_000_000,
				"queue.buffering.max.kbytes": 2 << 20, "linger.ms": 100})
			defer p.Close()
			tp, err := AttachTopic(p, topic)
			if err != nil {
				b.Fatal(err)
			}
			defer tp.Close()
			recs := make([][]byte, 4096)
			for i := range recs {
				recs[i] = benchValue(i)
			}
			t := topic
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; {
				n := min(len(recs), b.N-done)
				if path == "shim" {
					k, err := tp.Produce(kafka.PartitionAny, n, func(i int) ([]byte, []byte) { return nil, recs[i] })
					if err != nil || k != n {
						b.Fatalf("produced %d of %d: %v", k, n, err)
					}
				} else {
					for i := range n {
						err := p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &t, Partition: kafka.PartitionAny}, Value: recs[i]}, nil)
						var ke kafka.Error
						if errors.As(err, &ke) || err != nil {
							b.Fatal(err)
						}
					}
				}
				done += n
			}
			b.StopTimer()
			if left := p.Flush(120_000); left != 0 {
				b.Fatalf("%d records not delivered", left)
			}
		})
	}
}

// BenchmarkProduceDelivered produces records and waits for their delivery
// reports, as the at-least-once sink does: "client" through a
// confluent-kafka-go producer whose reports a goroutine reads from
// Events() (one Go Message per record), "own" through Producer (reports
// counted in C). The broker (kfake) runs in the process, so ns/op includes
// its work; allocs/op is the client side's per record plus the broker's.
func BenchmarkProduceDelivered(b *testing.B) {
	for _, path := range []string{"client", "own"} {
		b.Run(path, func(b *testing.B) {
			brokers := cluster(b)
			recs := make([][]byte, 4096)
			for i := range recs {
				recs[i] = benchValue(i)
			}
			conf := kafka.ConfigMap{"bootstrap.servers": brokers, "linger.ms": 5, "acks": "all",
				"enable.idempotence": true, "queue.buffering.max.messages": 100_000}
			var delivered atomic.Int64
			all, allOnce := make(chan struct{}), sync.Once{}
			count := func(n int64) {
				if delivered.Add(n) >= int64(b.N) {
					allOnce.Do(func() { close(all) })
				}
			}
			var p interface{ Flush(int) int }
			var tp *Topic
			if path == "client" {
				conf["go.delivery.report.fields"] = "none"
				conf["go.events.channel.size"] = 10_000
				cp, err := kafka.NewProducer(&conf)
				if err != nil {
					b.Fatal(err)
				}
				defer cp.Close()
				go func() {
					for ev := range cp.Events() {
						if m, ok := ev.(*kafka.Message); ok && m.TopicPartition.Error == nil {
							count(1)
						}
					}
				}()
				if tp, err = AttachTopic(cp, topic); err != nil {
					b.Fatal(err)
				}
				p = cp
			} else {
				op, err := NewProducer(conf, ProducerEvents{Delivered: count})
				if err != nil {
					b.Fatal(err)
				}
				defer op.Close()
				if tp, err = op.Result(topic); err != nil {
					b.Fatal(err)
				}
				p = op
			}
			defer tp.Close() // before the producer's Close
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; {
				n := min(len(recs), b.N-done)
				if err := tp.ProduceAll(kafka.PartitionAny, n, func(i int) ([]byte, []byte) { return nil, recs[i] },
					func(error) error { p.Flush(2); return nil }); err != nil {
					b.Fatal(err)
				}
				done += n
			}
			if left := p.Flush(120_000); left != 0 {
				b.Fatalf("%d records not delivered", left)
			}
			select {
			case <-all:
			case <-time.After(time.Minute):
				b.Fatalf("%d of %d delivery reports within a minute", delivered.Load(), b.N)
			}
			b.StopTimer()
		})
	}
}
