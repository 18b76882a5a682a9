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
func Config(brokers string, defaults kafka.ConfigMap, props map[string]string, managed kafka.ConfigMap) kafka.ConfigMap {
	conf := kafka.ConfigMap{"log_level": logLevel}
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

// NewProducer makes a producer with Config's configuration.
func NewProducer(brokers string, defaults kafka.ConfigMap, props map[string]string, managed kafka.ConfigMap) (*kafka.Producer, error) {
	conf := Config(brokers, defaults, props, managed)
	p, err := kafka.NewProducer(&conf)
	if err != nil {
		return nil, fmt.Errorf("kafka producer: %w", err)
	}
	return p, nil
}

// NewAdmin makes an admin client for the cluster at brokers with the
// job's properties props (its security settings).
func NewAdmin(brokers string, props map[string]string) (*kafka.AdminClient, error) {
	conf := Config(brokers, nil, props, nil)
	a, err := kafka.NewAdminClient(&conf)
	if err != nil {
		return nil, fmt.Errorf("kafka admin client: %w", err)
	}
	return a, nil
}
