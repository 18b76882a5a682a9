package main

import (
	"testing"
)

// TestRunDeadLetterTopicMissing: bad_records: dead-letter naming a topic
// the brokers do not have is one line naming dead_letter.topic and the
// topic, exit 2, before the job starts; without dead_letter.topic, one
// line naming the key.
func TestRunDeadLetterTopicMissing(t *testing.T) {
	brokers := startKfake(t)
	job := writeJobFile(t, brokers, "bad_records: dead-letter\ndead_letter:\n  topic: nosuch\n")
	wantBadInput(t, runEngine(t, "run", "--config", job, "--status-interval", "0", "--log-level", "error"),
		`dead_letter.topic: topic "nosuch" does not exist on `+brokers)
	job = writeJobFile(t, brokers, "bad_records: dead-letter\n")
	wantBadInput(t, runEngine(t, "run", "--config", job, "--status-interval", "0", "--log-level", "error"),
		"dead_letter.topic: required with bad_records: dead-letter")
}
