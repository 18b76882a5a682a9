package actors

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// SinkConfig configures one Kafka sink subtask.
type SinkConfig struct {
	Task       string
	Index      int
	Inputs     int
	Brokers    string
	Topic      string
	Properties map[string]string
	// WindowMillis turns a window start into a window end.
	WindowMillis int64
	// FlushTimeout bounds the wait for Kafka to acknowledge everything at
	// the end of input, and for room in the producer queue.
	FlushTimeout time.Duration
	// Checkpoint is nil when checkpoints are off.
	Checkpoint *Checkpointing
	Metrics    *Metrics
	Done       *sync.WaitGroup
	Log        *slog.Logger
}

type deliveryFailed struct{ err error }

// Sink writes one JSON result per key and window to Kafka. It returns a
// credit for a batch once the batch is in the producer's queue, so a slow
// broker slows the whole job down instead of growing memory.
type Sink struct {
	cfg    SinkConfig
	prod   *kafka.Producer
	ended  int
	failed bool
	// deliveryErr is set by the delivery report reader; flush checks it.
	deliveryErr atomic.Pointer[error]
}

// NewSink returns the producer of a sink actor.
func NewSink(cfg SinkConfig) actor.Producer {
	if cfg.FlushTimeout <= 0 {
		cfg.FlushTimeout = 60 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = &Metrics{}
	}
	return func() actor.Actor { return &Sink{cfg: cfg} }
}

// Receive implements actor.Actor.
func (s *Sink) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		if err := s.start(ctx); err != nil {
			s.fail(ctx, err)
		}
	case *Batch:
		if s.failed {
			return
		}
		if err := s.write(m.Records); err != nil {
			s.fail(ctx, err)
			return
		}
		ctx.Send(m.From, &Credit{Out: m.Out, N: 1})
	case *EndOfInput:
		s.ended++
		if s.ended == s.cfg.Inputs && !s.failed {
			if err := s.flush(); err != nil {
				s.fail(ctx, err)
				return
			}
			ctx.Send(ctx.Parent(), &Finished{Task: s.cfg.Task})
		}
	case *Barrier:
		if s.failed || !s.cfg.Checkpoint.Enabled() {
			return
		}
		// At least once: everything before the barrier must be in Kafka
		// before this task acks the checkpoint.
		if err := s.flush(); err != nil {
			ctx.Send(ctx.Parent(), &CheckpointDecline{Task: s.cfg.Task, ID: m.ID, Reason: err.Error()})
			return
		}
		s.cfg.Checkpoint.snapshot(ctx, s.cfg.Task, m.ID, nil, []byte("{}"))
	case *CheckpointComplete, *CheckpointAbort:
	case *deliveryFailed:
		s.fail(ctx, m.err)
	case *actor.Stopping:
		if err := s.cfg.Checkpoint.close(); err != nil {
			s.cfg.Log.Warn("close state store", "task", s.cfg.Task, "err", err)
		}
		if s.prod != nil {
			s.prod.Close()
			s.prod = nil
			if s.cfg.Done != nil {
				s.cfg.Done.Done()
			}
		}
	}
}

func (s *Sink) fail(ctx actor.Context, err error) {
	if s.failed {
		return
	}
	s.failed = true
	ctx.Send(ctx.Parent(), &Failed{Task: s.cfg.Task, Err: err})
}

func (s *Sink) start(ctx actor.Context) error {
	conf := kafka.ConfigMap{
		"bootstrap.servers":  s.cfg.Brokers,
		"enable.idempotence": true,
		"acks":               "all",
		"linger.ms":          5,
		"log_level":          3,
	}
	for k, v := range s.cfg.Properties {
		conf[k] = v
	}
	p, err := kafka.NewProducer(&conf)
	if err != nil {
		return fmt.Errorf("sink %s: create producer: %w", s.cfg.Task, err)
	}
	s.prod = p
	if s.cfg.Done != nil {
		s.cfg.Done.Add(1)
	}
	root, self := ctx.ActorSystem().Root, ctx.Self()
	metrics, task, derr := s.cfg.Metrics, s.cfg.Task, &s.deliveryErr
	go func() {
		reported := false
		for ev := range p.Events() {
			switch e := ev.(type) {
			case *kafka.Message:
				if e.TopicPartition.Error != nil {
					if !reported {
						reported = true
						err := fmt.Errorf("sink %s: write to %s: %w", task, *e.TopicPartition.Topic, e.TopicPartition.Error)
						derr.Store(&err)
						root.Send(self, &deliveryFailed{err})
					}
					continue
				}
				metrics.ResultsOut.Add(1)
			case kafka.Error:
				if e.IsFatal() && !reported {
					reported = true
					root.Send(self, &deliveryFailed{fmt.Errorf("sink %s: fatal producer error: %w", task, e)})
				}
			}
		}
	}()
	return nil
}

// AppendResultJSON appends the JSON result of one key and window.
func AppendResultJSON(b []byte, r Record, windowMillis int64) []byte {
	b = append(b, `{"key":"`...)
	b = append(b, r.Key...)
	b = append(b, `","window_start":`...)
	b = strconv.AppendInt(b, r.TS, 10)
	b = append(b, `,"window_end":`...)
	b = strconv.AppendInt(b, r.TS+windowMillis, 10)
	b = append(b, `,"count":`...)
	b = strconv.AppendInt(b, r.Count, 10)
	b = append(b, `,"sum":`...)
	b = strconv.AppendFloat(b, r.Val, 'f', -1, 64)
	return append(b, '}')
}

func (s *Sink) write(recs []Record) error {
	topic := s.cfg.Topic
	for _, r := range recs {
		v := AppendResultJSON(make([]byte, 0, 96), r, s.cfg.WindowMillis)
		msg := &kafka.Message{
			TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny},
			Key:            []byte(r.Key),
			Value:          v,
		}
		deadline := time.Now().Add(s.cfg.FlushTimeout)
		for {
			err := s.prod.Produce(msg, nil)
			if err == nil {
				break
			}
			var ke kafka.Error
			if errors.As(err, &ke) && ke.Code() == kafka.ErrQueueFull && time.Now().Before(deadline) {
				s.prod.Flush(100)
				continue
			}
			return fmt.Errorf("sink %s: produce to %s: %w", s.cfg.Task, topic, err)
		}
	}
	return nil
}

func (s *Sink) flush() error {
	deadline := time.Now().Add(s.cfg.FlushTimeout)
	for s.prod.Flush(200) > 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("sink %s: %d results not acknowledged by Kafka within %v", s.cfg.Task, s.prod.Len(), s.cfg.FlushTimeout)
		}
	}
	if e := s.deliveryErr.Load(); e != nil {
		return *e
	}
	return nil
}
