package kafkaconf

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestIsSecret(t *testing.T) {
	for name, want := range map[string]bool{
		"sasl.password": true, "ssl.key.password": true, "ssl.keystore.password": true,
		"sasl.oauthbearer.client.secret": true, "my.token": true, "My.TOKEN": true, "X-Secret-Key": true,
		"ssl.key.pem": true, "sasl.oauthbearer.config": true,
		"sasl.username": false, "security.protocol": false, "linger.ms": false, "ssl.ca.location": false,
	} {
		if got := IsSecret(name); got != want {
			t.Errorf("IsSecret(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestRedact(t *testing.T) {
	secret := `Tz9-"quoted\pw`
	RegisterSecrets(map[string]string{"sasl.password": secret, "sasl.username": "alice-not-secret", "my.token": "abc"})
	quoted := strconv.Quote(secret)
	js, _ := json.Marshal(secret)
	in := "raw " + secret + " go " + quoted + " json " + string(js) + " user alice-not-secret short abc"
	got := Redact(in)
	for _, leak := range []string{secret, quoted[1 : len(quoted)-1], string(js[1 : len(js)-1])} {
		if strings.Contains(got, leak) {
			t.Errorf("Redact(%q) = %q still holds %q", in, got, leak)
		}
	}
	if !strings.Contains(got, "alice-not-secret") || !strings.Contains(got, "short abc") {
		t.Errorf("Redact(%q) = %q hides what is not a secret (or a value too short to look for)", in, got)
	}
	props := RedactProps(map[string]string{"sasl.password": "x", "linger.ms": "5"})
	if props["sasl.password"] != Redacted || props["linger.ms"] != "5" {
		t.Errorf("RedactProps = %v", props)
	}
	var b bytes.Buffer
	if _, err := RedactingWriter(&b).Write([]byte("line " + secret + "\n")); err != nil || b.String() != "line "+Redacted+"\n" {
		t.Errorf("RedactingWriter wrote %q, %v", b.String(), err)
	}
}

// lockedBuf collects writes and closes seen once they hold want.
type lockedBuf struct {
	mu   sync.Mutex
	b    bytes.Buffer
	want string
	seen chan struct{}
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	had := strings.Contains(l.b.String(), l.want)
	n, err := l.b.Write(p)
	if !had && strings.Contains(l.b.String(), l.want) {
		close(l.seen)
	}
	return n, err
}

func (l *lockedBuf) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// TestClientLogRedacted: librdkafka prints its configuration with debug:
// conf, sensitive properties of its own list hidden but not every property
// whose name says token; its log goes through Go and is redacted.
func TestClientLogRedacted(t *testing.T) {
	out := &lockedBuf{want: "sasl.oauthbearer.token.endpoint.url", seen: make(chan struct{})}
	SetClientLogOutput(out)
	defer SetClientLogOutput(nil)
	const secret = "https://S3cr3t-endpoint-7e2a.example/token"
	p, err := NewProducer("127.0.0.1:1", nil, map[string]string{"debug": "conf", "log_level": "7", "sasl.oauthbearer.token.endpoint.url": secret}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close() // before the log is through, it would drop the lines
	select {
	case <-out.seen:
	case <-time.After(10 * time.Second):
	}
	got := out.String()
	if !strings.Contains(got, "sasl.oauthbearer.token.endpoint.url = "+Redacted) {
		t.Fatalf("the client's configuration dump did not come through redacted:\n%s", got)
	}
	if strings.Contains(got, "S3cr3t-endpoint-7e2a") {
		t.Fatalf("the secret is in the client's log:\n%s", got)
	}
}
