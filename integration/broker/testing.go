package broker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// startTimeout bounds Start in the test helpers, including a first fetch of
// the release; readiness itself is bounded by Options.ReadyTimeout.
const startTimeout = 20 * time.Minute

var (
	sharedMu    sync.Mutex
	shared      *Cluster
	topicSeq    atomic.Int64
	maxTopicLen = 200 // Kafka allows 249; leave room for the suffix
)

// Main starts one cluster of the given size shared by a test package, runs
// the tests and stops the cluster. It returns the exit code for os.Exit:
//
//	func TestMain(m *testing.M) { os.Exit(broker.Main(m, 1)) }
//
// If the cluster cannot start, Main prints why and returns 1; it never skips.
// The data directory is removed after a passing run and kept (its path
// printed) after a failing one, for the broker logs.
func Main(m *testing.M, brokers int) int {
	dir, err := os.MkdirTemp("", "weir-kafka-")
	if err != nil {
		fmt.Printf("kafka: broker did not start: data dir: %v\n", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	c, err := Start(ctx, Options{Brokers: brokers, Dir: dir})
	cancel()
	if err != nil {
		fmt.Printf("kafka: broker did not start: %v\n", err)
		fmt.Printf("kafka: logs kept in %s\n", dir)
		return 1
	}
	fmt.Printf("kafka: Apache Kafka %s (KRaft, %s) at %s\n", c.Version(), plural(c.NumBrokers(), "broker"), c.Bootstrap())
	sharedMu.Lock()
	shared = c
	sharedMu.Unlock()

	code := m.Run()

	sharedMu.Lock()
	shared = nil
	sharedMu.Unlock()
	if err := c.Stop(); err != nil {
		fmt.Printf("kafka: stop: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	if code == 0 {
		os.RemoveAll(dir)
	} else {
		fmt.Printf("kafka: logs kept in %s\n", dir)
	}
	return code
}

// Shared returns the cluster started by Main, or nil outside Main.
func Shared() *Cluster {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	return shared
}

// Topic creates a fresh, uniquely named topic with the given number of
// partitions on the shared cluster and returns its name. It fails the test
// if there is no shared cluster or the topic cannot be created.
func Topic(t testing.TB, partitions int) string {
	t.Helper()
	c := Shared()
	if c == nil {
		t.Fatal("broker: no shared cluster; call broker.Main from TestMain")
	}
	return c.Topic(t, partitions)
}

// Topic creates a fresh, uniquely named topic on c, derived from t.Name(),
// and fails the test on error.
func (c *Cluster) Topic(t testing.TB, partitions int) string {
	t.Helper()
	name := TopicName(t)
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	if err := c.CreateTopic(ctx, name, partitions, nil); err != nil {
		t.Fatal(err)
	}
	// Delete it, and the progress topic an exactly-once job writing to it
	// created (128 partitions), when the test ends: a broker shared by the
	// whole suite would otherwise run out of file descriptors.
	t.Cleanup(func() {
		for _, n := range []string{name, name + ".weir-progress"} {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := c.DeleteTopic(ctx, n)
			cancel()
			if err != nil && !errors.Is(err, kerr.UnknownTopicOrPartition) {
				t.Logf("broker: cleanup: %v", err)
			}
		}
	})
	return name
}

// TopicName returns a topic name unique in this process, derived from
// t.Name() with every character Kafka does not allow replaced by '-'.
func TopicName(t testing.TB) string {
	var b strings.Builder
	for _, r := range t.Name() {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	s := b.String()
	if len(s) > maxTopicLen {
		s = s[:maxTopicLen]
	}
	return fmt.Sprintf("%s-%d", s, topicSeq.Add(1))
}

// ForTest starts a private cluster of the given size for one test, in a
// directory of t.TempDir(), and stops it in t.Cleanup. Use it for tests that
// kill, stop or restart brokers. A cluster that does not start fails the test.
func ForTest(t testing.TB, brokers int) *Cluster {
	t.Helper()
	return forTest(t, Options{Brokers: brokers})
}

// SecuredForTest is ForTest for a cluster started with Options.Secured:
// besides the plain listener every node has a SASL_SSL listener with
// SCRAM-SHA-512 (SecuredBootstrap, ClientProperties). It prints the version
// line, naming both listeners, as Main does for the shared cluster.
func SecuredForTest(t testing.TB, brokers int) *Cluster {
	t.Helper()
	c := forTest(t, Options{Brokers: brokers, Secured: true})
	fmt.Printf("kafka: Apache Kafka %s (KRaft, %s, %s) at %s; %s %s at %s\n",
		c.Version(), plural(c.NumBrokers(), "broker"), SecuredProtocol, c.Bootstrap(),
		SecuredProtocol, SCRAMMechanism, c.SecuredBootstrap())
	return c
}

// forTest starts a cluster with o in a directory of t.TempDir() and stops it
// in t.Cleanup.
func forTest(t testing.TB, o Options) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	o.Dir = t.TempDir()
	o.Log = testLog{t}
	c, err := Start(ctx, o)
	if err != nil {
		t.Fatalf("kafka: broker did not start: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kafka: broker logs: %s/node-*/server.log", c.Dir())
			for i := range c.NumBrokers() {
				t.Logf("%s", c.logTail(c.nodes[i]))
			}
		}
		if err := c.Stop(); err != nil {
			t.Error(err)
		}
	})
	return c
}

// testLog writes progress lines to the test log.
type testLog struct{ t testing.TB }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
