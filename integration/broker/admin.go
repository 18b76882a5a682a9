package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const (
	adminTimeout   = 60 * time.Second // default bound when ctx has no deadline
	attemptTimeout = 10 * time.Second
	requestTimeout = 30 * time.Second // sent to the broker as TimeoutMillis
)

// CreateTopic creates a topic with the given partition count, replication
// factor min(3, NumBrokers()) and topic configs, and waits until every
// partition has a leader.
func (c *Cluster) CreateTopic(ctx context.Context, name string, partitions int, configs map[string]string) error {
	if partitions < 1 {
		return fmt.Errorf("broker: create topic %q: partitions = %d, want >= 1", name, partitions)
	}
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	err := retry(ctx, func(actx context.Context, attempt int) error {
		req := kmsg.NewPtrCreateTopicsRequest()
		req.TimeoutMillis = int32(requestTimeout / time.Millisecond)
		t := kmsg.NewCreateTopicsRequestTopic()
		t.Topic = name
		t.NumPartitions = int32(partitions)
		t.ReplicationFactor = int16(c.rf())
		for k, v := range configs {
			cfg := kmsg.NewCreateTopicsRequestTopicConfig()
			cfg.Name = k
			cfg.Value = &v
			t.Configs = append(t.Configs, cfg)
		}
		req.Topics = append(req.Topics, t)
		resp, err := req.RequestWith(actx, c.admin)
		if err != nil {
			return err
		}
		if len(resp.Topics) != 1 {
			return fmt.Errorf("%d topics in CreateTopics response, want 1", len(resp.Topics))
		}
		err = kerr.ErrorForCode(resp.Topics[0].ErrorCode)
		if attempt > 0 && errors.Is(err, kerr.TopicAlreadyExists) {
			return nil // an earlier attempt got through
		}
		return withMessage(err, resp.Topics[0].ErrorMessage)
	})
	if err != nil {
		return fmt.Errorf("broker: create topic %q: %w", name, err)
	}
	if err := c.waitLeaders(ctx, name, partitions); err != nil {
		return fmt.Errorf("broker: create topic %q: %w", name, err)
	}
	return nil
}

// CreatePartitions raises topic's partition count to total and waits until
// every partition has a leader.
func (c *Cluster) CreatePartitions(ctx context.Context, topic string, total int) error {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	err := retry(ctx, func(actx context.Context, attempt int) error {
		req := kmsg.NewPtrCreatePartitionsRequest()
		req.TimeoutMillis = int32(requestTimeout / time.Millisecond)
		t := kmsg.NewCreatePartitionsRequestTopic()
		t.Topic = topic
		t.Count = int32(total)
		req.Topics = append(req.Topics, t)
		resp, err := req.RequestWith(actx, c.admin)
		if err != nil {
			return err
		}
		if len(resp.Topics) != 1 {
			return fmt.Errorf("%d topics in CreatePartitions response, want 1", len(resp.Topics))
		}
		err = kerr.ErrorForCode(resp.Topics[0].ErrorCode)
		if attempt > 0 && errors.Is(err, kerr.InvalidPartitions) {
			return nil // an earlier attempt got through; waitLeaders checks the count
		}
		return withMessage(err, resp.Topics[0].ErrorMessage)
	})
	if err != nil {
		return fmt.Errorf("broker: create partitions of %q up to %d: %w", topic, total, err)
	}
	if err := c.waitLeaders(ctx, topic, total); err != nil {
		return fmt.Errorf("broker: create partitions of %q up to %d: %w", topic, total, err)
	}
	return nil
}

// DeleteTopic deletes a topic.
func (c *Cluster) DeleteTopic(ctx context.Context, name string) error {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	err := retry(ctx, func(actx context.Context, attempt int) error {
		req := kmsg.NewPtrDeleteTopicsRequest()
		req.TimeoutMillis = int32(requestTimeout / time.Millisecond)
		req.TopicNames = []string{name}
		t := kmsg.NewDeleteTopicsRequestTopic()
		t.Topic = &name
		req.Topics = append(req.Topics, t)
		resp, err := req.RequestWith(actx, c.admin)
		if err != nil {
			return err
		}
		if len(resp.Topics) != 1 {
			return fmt.Errorf("%d topics in DeleteTopics response, want 1", len(resp.Topics))
		}
		err = kerr.ErrorForCode(resp.Topics[0].ErrorCode)
		if attempt > 0 && errors.Is(err, kerr.UnknownTopicOrPartition) {
			return nil
		}
		return withMessage(err, resp.Topics[0].ErrorMessage)
	})
	if err != nil {
		return fmt.Errorf("broker: delete topic %q: %w", name, err)
	}
	return nil
}

// TxnCoordinator returns the index of the broker that Kafka names as the
// transaction coordinator for transactionalID (FindCoordinator, key type 1).
// The first call for an ID may create __transaction_state; it retries while
// the coordinator is not available.
func (c *Cluster) TxnCoordinator(ctx context.Context, transactionalID string) (int, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	var id int32
	err := retry(ctx, func(actx context.Context, _ int) error {
		req := kmsg.NewPtrFindCoordinatorRequest()
		req.CoordinatorType = 1 // transaction
		req.CoordinatorKey = transactionalID
		req.CoordinatorKeys = []string{transactionalID}
		resp, err := req.RequestWith(actx, c.admin)
		if err != nil {
			return err
		}
		code, msg, node := resp.ErrorCode, resp.ErrorMessage, resp.NodeID
		if len(resp.Coordinators) > 0 {
			co := resp.Coordinators[0]
			code, msg, node = co.ErrorCode, co.ErrorMessage, co.NodeID
		}
		if err := withMessage(kerr.ErrorForCode(code), msg); err != nil {
			return err
		}
		id = node
		return nil
	})
	if err != nil {
		return -1, fmt.Errorf("broker: find transaction coordinator of %q: %w", transactionalID, err)
	}
	if id < 0 || int(id) >= len(c.nodes) {
		return -1, fmt.Errorf("broker: transaction coordinator of %q is node %d, not one of ours", transactionalID, id)
	}
	return int(id), nil
}

// waitReady polls until every node is registered and a topic create/delete
// round trip works.
func (c *Cluster) waitReady(ctx context.Context) error {
	var last error
	for {
		if err := c.exitedNode(); err != nil {
			return err
		}
		last = c.checkReady(ctx)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out (%w); last check: %v", ctx.Err(), last)
		case <-time.After(pollInterval):
		}
	}
}

func (c *Cluster) checkReady(ctx context.Context) error {
	actx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	ids, err := brokerIDs(actx, c.admin.Request)
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	if len(ids) != len(c.nodes) {
		return fmt.Errorf("%d of %d brokers registered (%v)", len(ids), len(c.nodes), ids)
	}
	name := "weir-ready-" + c.clusterID
	if err := c.CreateTopic(actx, name, 1, nil); err != nil {
		return err
	}
	return c.DeleteTopic(actx, name)
}

// waitNodeServing polls until node n answers a metadata request that lists
// itself and every running node, and the other nodes list it too.
func (c *Cluster) waitNodeServing(ctx context.Context, n *node) error {
	direct, err := kgo.NewClient(kgo.SeedBrokers(n.brokerAddr()), kgo.DialTimeout(5*time.Second))
	if err != nil {
		return fmt.Errorf("client for node %d: %w", n.id, err)
	}
	defer direct.Close()
	seed := direct.SeedBrokers()[0]
	check := func() error {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		defer cancel()
		want := c.runningIDs()
		own, err := brokerIDs(actx, seed.Request)
		if err != nil {
			return fmt.Errorf("metadata from node %d: %w", n.id, err)
		}
		if !slices.Equal(own, want) {
			return fmt.Errorf("node %d sees brokers %v, want %v", n.id, own, want)
		}
		all, err := brokerIDs(actx, c.admin.Request)
		if err != nil {
			return fmt.Errorf("metadata: %w", err)
		}
		if !slices.Contains(all, int32(n.id)) {
			return fmt.Errorf("cluster sees brokers %v, without node %d", all, n.id)
		}
		return nil
	}
	var last error
	for {
		if n.proc.exited() {
			return fmt.Errorf("node %d exited: %v", n.id, n.proc.err)
		}
		if last = check(); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out (%w); last check: %v", ctx.Err(), last)
		case <-time.After(pollInterval):
		}
	}
}

// runningIDs returns the sorted IDs of nodes whose process is alive.
func (c *Cluster) runningIDs() []int32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ids []int32
	for _, n := range c.nodes {
		if n.proc != nil && !n.proc.exited() {
			ids = append(ids, int32(n.id))
		}
	}
	return ids
}

type requestFunc func(context.Context, kmsg.Request) (kmsg.Response, error)

// brokerIDs returns the sorted IDs of the brokers in a metadata response.
func brokerIDs(ctx context.Context, do requestFunc) ([]int32, error) {
	req := kmsg.NewPtrMetadataRequest()
	req.Topics = []kmsg.MetadataRequestTopic{} // brokers only
	resp, err := do(ctx, req)
	if err != nil {
		return nil, err
	}
	var ids []int32
	for _, b := range resp.(*kmsg.MetadataResponse).Brokers {
		ids = append(ids, b.NodeID)
	}
	slices.Sort(ids)
	return ids, nil
}

// waitLeaders polls metadata until topic has exactly partitions partitions,
// each with a leader.
func (c *Cluster) waitLeaders(ctx context.Context, topic string, partitions int) error {
	var last error
	for {
		last = c.checkLeaders(ctx, topic, partitions)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for partition leaders (%w): %v", ctx.Err(), last)
		case <-time.After(pollInterval):
		}
	}
}

func (c *Cluster) checkLeaders(ctx context.Context, topic string, partitions int) error {
	actx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	req := kmsg.NewPtrMetadataRequest()
	t := kmsg.NewMetadataRequestTopic()
	t.Topic = &topic
	req.Topics = append(req.Topics, t)
	resp, err := req.RequestWith(actx, c.admin)
	if err != nil {
		return err
	}
	if len(resp.Topics) != 1 {
		return fmt.Errorf("%d topics in metadata, want 1", len(resp.Topics))
	}
	mt := resp.Topics[0]
	if err := kerr.ErrorForCode(mt.ErrorCode); err != nil {
		return err
	}
	if len(mt.Partitions) != partitions {
		return fmt.Errorf("%d partitions, want %d", len(mt.Partitions), partitions)
	}
	for _, p := range mt.Partitions {
		if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
			return fmt.Errorf("partition %d: %w", p.Partition, err)
		}
		if p.Leader < 0 {
			return fmt.Errorf("partition %d has no leader", p.Partition)
		}
	}
	return nil
}

// retry calls f until it succeeds, fails with a non-retriable Kafka error,
// or ctx is done. Transport errors are retried.
func retry(ctx context.Context, f func(ctx context.Context, attempt int) error) error {
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout+requestTimeout)
		err := f(actx, attempt)
		cancel()
		if err == nil {
			return nil
		}
		var ke *kerr.Error
		if errors.As(err, &ke) && !ke.Retriable {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (gave up: %v)", err, ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}

func withDefaultTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, adminTimeout)
}

func withMessage(err error, msg *string) error {
	if err == nil || msg == nil || *msg == "" {
		return err
	}
	return fmt.Errorf("%w: %s", err, *msg)
}
