package weir

import (
	"errors"
	"io"

	"github.com/weirstream/weir/internal/kafkaconf"
)

// Redacted is what a secret value is shown as wherever the engine shows a
// job's configuration.
const Redacted = kafkaconf.Redacted

// IsSecretProperty reports whether the Kafka client property name holds a
// secret: any name containing password, secret or token, in any case
// (sasl.password, ssl.key.password, ssl.keystore.password,
// sasl.oauthbearer.client.secret, ...), and ssl.key.pem and
// sasl.oauthbearer.config. Their values are never printed, logged, stored
// in checkpoints or shown by the status API: wherever the engine shows a
// job's properties it shows Redacted, and the Kafka clients' own log lines
// and errors are redacted before they are written.
func IsSecretProperty(name string) bool { return kafkaconf.IsSecret(name) }

// Redacted returns a copy of s whose secret property values (kafka,
// source.properties, sink.properties; see IsSecretProperty) are Redacted:
// the spec to print, log or serve.
func (s JobSpec) Redacted() JobSpec {
	s.Kafka = kafkaconf.RedactProps(s.Kafka)
	s.Source.Properties = kafkaconf.RedactProps(s.Source.Properties)
	s.Sink.Properties = kafkaconf.RedactProps(s.Sink.Properties)
	s.Sink.DSN = redactDSN(s.Sink.DSN)
	return s
}

// RegisterSecrets makes RedactSecrets and RedactingWriter hide the values
// of s's secret properties. ParseJobFile and NewJob call it.
func RegisterSecrets(s JobSpec) {
	kafkaconf.RegisterSecrets(s.Kafka)
	kafkaconf.RegisterSecrets(s.Source.Properties)
	kafkaconf.RegisterSecrets(s.Sink.Properties)
	registerDSN(s.Sink.DSN)
}

// RedactSecrets returns msg with every registered secret value (those of
// the specs given to RegisterSecrets, ParseJobFile and NewJob, and of every
// Kafka client the engine built) replaced by Redacted: for messages that
// may echo configuration, such as the Kafka client's errors.
func RedactSecrets(msg string) string { return kafkaconf.Redact(msg) }

// RedactingWriter returns a writer to w that replaces every registered
// secret value (RedactSecrets) in what it writes; each Write is redacted on
// its own, so give it whole lines (log handlers and fmt.Fprintf do).
// engine run writes its log and its output through one.
func RedactingWriter(w io.Writer) io.Writer { return kafkaconf.RedactingWriter(w) }

// redactError hides registered secret values in the message of a
// *SpecError or of a check's error (which echo the Kafka client's errors).
func redactError(err error) error {
	var ce *checkError
	var se *SpecError
	switch {
	case err == nil:
	case errors.As(err, &ce):
		ce.spec.Msg = RedactSecrets(ce.spec.Msg)
	case errors.As(err, &se):
		se.Msg = RedactSecrets(se.Msg)
	}
	return err
}
