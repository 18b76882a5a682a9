package kafkaconf

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Redacted is what a secret value is shown as.
const Redacted = "[redacted]"

// secretNames are properties that hold a secret without saying so in
// their name (IsSecret also matches password, secret and token).
var secretNames = map[string]bool{
	"ssl.key.pem":             true, // a private key
	"sasl.oauthbearer.config": true, // may hold client credentials
}

// IsSecret reports whether the client property name holds a secret whose
// value is never printed, logged or stored: any name containing password,
// secret or token (in any case), such as sasl.password, ssl.key.password,
// ssl.keystore.password or sasl.oauthbearer.client.secret, and
// ssl.key.pem and sasl.oauthbearer.config.
func IsSecret(name string) bool {
	n := strings.ToLower(strings.TrimSpace(name))
	return strings.Contains(n, "password") || strings.Contains(n, "secret") ||
		strings.Contains(n, "token") || secretNames[n]
}

// minSecretLen is the shortest value Redact replaces in free text: a
// shorter one would match ordinary words. (Structured output, Redact's
// RedactProps, hides every secret value whatever its length.)
const minSecretLen = 4

var secrets struct {
	mu     sync.RWMutex
	values map[string]bool
	forms  []string // every registered value and its quoted forms, longest first
}

// RegisterSecrets remembers the values of the secret properties of props
// (IsSecret), so that Redact hides them wherever they appear: in the
// client's log lines, in errors that echo configuration, in anything the
// engine prints. Config registers the properties of every client it builds.
func RegisterSecrets(props map[string]string) {
	var fresh []string
	secrets.mu.RLock()
	for k, v := range props {
		if IsSecret(k) && len(v) >= minSecretLen && !secrets.values[v] {
			fresh = append(fresh, v)
		}
	}
	secrets.mu.RUnlock()
	if len(fresh) == 0 {
		return
	}
	secrets.mu.Lock()
	defer secrets.mu.Unlock()
	if secrets.values == nil {
		secrets.values = map[string]bool{}
	}
	for _, v := range fresh {
		if secrets.values[v] {
			continue
		}
		secrets.values[v] = true
		// As written, and as it appears inside a Go-quoted (%q, slog's
		// text handler) or JSON string.
		forms := []string{v, strings.Trim(strconv.Quote(v), `"`)}
		if b, err := json.Marshal(v); err == nil {
			forms = append(forms, strings.Trim(string(b), `"`))
		}
		for _, f := range forms {
			if len(f) >= minSecretLen && !contains(secrets.forms, f) {
				secrets.forms = append(secrets.forms, f)
			}
		}
	}
	sort.Slice(secrets.forms, func(i, j int) bool { return len(secrets.forms[i]) > len(secrets.forms[j]) })
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Redact returns s with every registered secret value (RegisterSecrets)
// replaced by Redacted.
func Redact(s string) string {
	secrets.mu.RLock()
	defer secrets.mu.RUnlock()
	for _, f := range secrets.forms {
		if strings.Contains(s, f) {
			s = strings.ReplaceAll(s, f, Redacted)
		}
	}
	return s
}

// RedactProps returns a copy of props whose secret values (IsSecret) are
// Redacted; nil for nil.
func RedactProps(props map[string]string) map[string]string {
	if props == nil {
		return nil
	}
	out := make(map[string]string, len(props))
	for k, v := range props {
		if IsSecret(k) {
			v = Redacted
		}
		out[k] = v
	}
	return out
}

// RedactingWriter returns a writer that writes to w what it is given with
// every registered secret value replaced (Redact). Each Write is redacted
// on its own: give it whole lines (the log handlers and fmt.Fprintf do).
func RedactingWriter(w io.Writer) io.Writer { return redactingWriter{w} }

type redactingWriter struct{ w io.Writer }

func (r redactingWriter) Write(p []byte) (int, error) {
	s := Redact(string(p))
	if _, err := io.WriteString(r.w, s); err != nil {
		return 0, err
	}
	return len(p), nil
}

// The client's own log (librdkafka's, which prints its whole configuration
// with the debug property) goes through Go, so that secret values are
// redacted before it is written: every client Config builds sends its log
// events to clientLogs, and one goroutine hands them, redacted, to the
// client log handler (SetClientLogHandler), by default a line on stderr.
var (
	clientLogs     = make(chan kafka.LogEvent, 1024)
	clientLogsOnce sync.Once
	clientLogMu    sync.Mutex
	clientLog      func(ev kafka.LogEvent)
)

// SetClientLogOutput sends the Kafka clients' own log lines (librdkafka's,
// redacted) to w, in librdkafka's format; nil: to stderr (the default).
func SetClientLogOutput(w io.Writer) {
	if w == nil {
		w = os.Stderr
	}
	SetClientLogHandler(func(ev kafka.LogEvent) {
		_, _ = fmt.Fprintf(w, "%%%d|%s|%s|%s| %s\n", ev.Level,
			ev.Timestamp.Format("2006-01-02T15:04:05.000Z07:00"), ev.Tag, ev.Name, ev.Message)
	})
}

// SetClientLogHandler hands every log event of the Kafka clients, its
// Message redacted, to f (one at a time), e.g. to log it with slog.
func SetClientLogHandler(f func(ev kafka.LogEvent)) {
	clientLogMu.Lock()
	defer clientLogMu.Unlock()
	clientLog = f
}

// startClientLogs starts the goroutine handling the clients' log events,
// once.
func startClientLogs() {
	clientLogsOnce.Do(func() {
		clientLogMu.Lock()
		if clientLog == nil {
			clientLogMu.Unlock()
			SetClientLogOutput(nil)
		} else {
			clientLogMu.Unlock()
		}
		go func() { // lives as long as the process: every client may log
			for ev := range clientLogs {
				ev.Message = Redact(ev.Message)
				clientLogMu.Lock()
				clientLog(ev)
				clientLogMu.Unlock()
			}
		}()
	})
}
