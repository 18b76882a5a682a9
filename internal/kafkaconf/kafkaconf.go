// Package kafkaconf builds the librdkafka configuration of every Kafka
// client the engine makes: sources' consumers and their offset lookups,
// sinks' producers (transactional or not), the admin clients that look up
// metadata and create progress topics, the progress-marker reader and the
// broker check. One place, so that what a job sets for its cluster
// (security.protocol, sasl.*, ssl.*, ...) reaches every one of them.
//
// A configuration is layered, later layers winning:
//
//  1. the engine's defaults for the client (a caller may pass none);
//  2. the job's properties for it: the job file's kafka section, then the
//     client's own section (source.properties or sink.properties), merged
//     by the caller;
//  3. what the engine manages itself (bootstrap.servers, group.id,
//     transactional.id, isolation.level, ...), which the job cannot set.
//
// Every producer (NewProducer, ProducerConfig) also gets a bounded queue
// below its defaults (ProducerQueueMaxMessages, ProducerQueueMaxKBytes),
// which the caller's defaults and the job's properties can change.
//
// Properties of another kind of client (a producer property given to an
// admin client) are ignored by librdkafka, which only logs a warning; the
// engine's clients log errors only.
package kafkaconf

import (
	"fmt"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// logLevel keeps librdkafka's own log to errors (syslog level 3).
const logLevel = 3

// Config returns the configuration of a client of the cluster at brokers:
// defaults, then props, then managed (see the package doc). Neither map is
// changed.
//
// The client's own log goes through Go with secret values redacted (see
// IsSecret, RegisterSecrets): the secret values of props are registered,
// and the client sends its log events to a channel whose lines are written
// to stderr (SetClientLogOutput), unless defaults or managed route them
// elsewhere (go.logs.channel).
func Config(brokers string, defaults kafka.ConfigMap, props map[string]string, managed kafka.ConfigMap) kafka.ConfigMap {
	RegisterSecrets(props)
	startClientLogs()
	conf := kafka.ConfigMap{"log_level": logLevel, "go.logs.channel.enable": true, "go.logs.channel": clientLogs}
	for k, v := range defaults {
		conf[k] = v
	}
	for k, v := range props {
		conf[k] = v
	}
	for k, v := range managed {
		conf[k] = v
	}
	conf["bootstrap.servers"] = brokers
	return conf
}

// NewConsumer makes a consumer with Config's configuration.
func NewConsumer(brokers string, defaults kafka.ConfigMap, props map[string]string, managed kafka.ConfigMap) (*kafka.Consumer, error) {
	conf := Config(brokers, defaults, props, managed)
	c, err := kafka.NewConsumer(&conf)
	if err != nil {
		return nil, fmt.Errorf("kafka consumer: %w", err)
	}
	return c, nil
}

// Bounds of every producer's queue: the records handed to librdkafka and
// not yet acknowledged by the brokers, counted (queue.buffering.max.messages)
// and in bytes of keys and values (queue.buffering.max.kbytes), whichever
// is reached first. librdkafka's own defaults, 100000 records and 1 GiB,
// let a producer hold far more than it needs to keep the brokers busy:
// memory, and time, since an exactly-once sink waits at each checkpoint
// barrier until its queue is acknowledged (the pre-commit flush), so the
// queue's depth is added to every checkpoint under backlog. A Produce into
// a full queue waits for room. 20000 records is above the most the
// benchmark's passthrough (local broker, parallelism 2) had queued at a
// barrier, about 12000, so it costs no throughput there; it bounds the queue, and the wait at
// the barrier, when the brokers are slower than the job. A job raises
// them with sink.properties (or kafka).
const (
	ProducerQueueMaxMessages = 20_000 // queue.buffering.max.messages
	ProducerQueueMaxKBytes   = 65_536 // queue.buffering.max.kbytes: 64 MiB
)

// ProducerConfig returns the configuration of a producer: Config's, with
// the queue bounds under defaults.
func ProducerConfig(brokers string, defaults kafka.ConfigMap, props map[string]string, managed kafka.ConfigMap) kafka.ConfigMap {
	base := kafka.ConfigMap{
		"queue.buffering.max.messages": ProducerQueueMaxMessages,
		"queue.buffering.max.kbytes":   ProducerQueueMaxKBytes,
	}
	for k, v := range defaults {
		base[k] = v
	}
	return Config(brokers, base, props, managed)
}

// NewProducer makes a producer with ProducerConfig's configuration.
func NewProducer(brokers string, defaults kafka.ConfigMap, props map[string]string, managed kafka.ConfigMap) (*kafka.Producer, error) {
	conf := ProducerConfig(brokers, defaults, props, managed)
	p, err := kafka.NewProducer(&conf)
	if err != nil {
		return nil, fmt.Errorf("kafka producer: %w", err)
	}
	return p, nil
}

// NewAdmin makes an admin client for the cluster at brokers with the
// job's properties props (its security settings). An admin client cannot
// send its log through Go (see Config), so it logs errors only and without
// the debug property, whose configuration dump could show secret values.
func NewAdmin(brokers string, props map[string]string) (*kafka.AdminClient, error) {
	conf := Config(brokers, nil, props, nil)
	delete(conf, "go.logs.channel.enable")
	delete(conf, "go.logs.channel")
	delete(conf, "debug")
	conf["log_level"] = logLevel
	a, err := kafka.NewAdminClient(&conf)
	if err != nil {
		return nil, fmt.Errorf("kafka admin client: %w", err)
	}
	return a, nil
}
