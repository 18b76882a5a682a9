package weir

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/supervisor"
)

// TestSpecRedacted: the secret properties of every section are hidden in
// the copy, the spec itself is unchanged.
func TestSpecRedacted(t *testing.T) {
	s := exampleSpec()
	s.Kafka = map[string]string{"sasl.password": "p", "Sasl.OAuthBearer.Client.Secret": "c", "security.protocol": "SASL_SSL"}
	s.Source.Properties = map[string]string{"my.token": "t", "fetch.max.bytes": "1"}
	s.Sink.Properties = map[string]string{"ssl.key.password": "k", "linger.ms": "5"}
	r := s.Redacted()
	for _, m := range []map[string]string{r.Kafka, r.Source.Properties, r.Sink.Properties} {
		for k, v := range m {
			if IsSecretProperty(k) != (v == Redacted) {
				t.Errorf("%s = %q in the redacted spec", k, v)
			}
		}
	}
	if s.Kafka["sasl.password"] != "p" || s.Sink.Properties["ssl.key.password"] != "k" {
		t.Error("Redacted changed the spec it was called on")
	}
}

// TestCheckBrokersRedactsErrors: an error of the broker check that would
// echo a secret value shows it redacted.
func TestCheckBrokersRedactsErrors(t *testing.T) {
	s := exampleSpec()
	const secret = "S3cr3t-refused-31ab"
	// librdkafka refuses the value of a property it knows, naming the value:
	// here a secret given by mistake as the value of sasl.mechanisms, with
	// the same value (a password) under sasl.password.
	s.Kafka = map[string]string{"sasl.password": secret, "sasl.mechanisms": secret, "security.protocol": "SASL_PLAINTEXT"}
	err := CheckBrokers(context.Background(), s, time.Second)
	if err == nil {
		t.Fatal("no error")
	}
	if strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), Redacted) {
		t.Errorf("error %q: want the secret value redacted", err)
	}
}

// TestStatusRedactsSecrets: errors the status API shows (the last failure,
// a checkpoint's reason) have secret values redacted.
func TestStatusRedactsSecrets(t *testing.T) {
	s := exampleSpec()
	const secret = "S3cr3t-status-77aa"
	s.Kafka = map[string]string{"sasl.password": secret}
	j, err := NewJob(s)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	j.obs.checkpoint(supervisor.CheckpointEvent{ID: 1, State: "in_progress", Triggered: now})
	j.obs.checkpoint(supervisor.CheckpointEvent{ID: 2, State: "in_progress", Triggered: now})
	j.obs.checkpoint(supervisor.CheckpointEvent{ID: 1, State: "failed", Triggered: now, Reason: "declined: client config sasl.password=" + secret})
	j.obs.failure(errors.New("kafka: sasl.password="+secret+" refused"), now)
	b, err := json.Marshal(map[string]any{"job": j.Status().Job(), "checkpoints": j.Status().Checkpoints()})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), secret) || strings.Count(string(b), Redacted) < 3 {
		t.Errorf("status JSON shows the secret or lacks the redactions:\n%s", b)
	}
}
