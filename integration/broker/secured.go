package broker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The secured listener: SASL_SSL with SCRAM-SHA-512, no client certificates
// and no authorizer (authentication only).
const (
	// SecuredProtocol is the security protocol of the secured listener.
	SecuredProtocol = "SASL_SSL"
	// SCRAMMechanism is the only SASL mechanism the secured listener
	// enables.
	SCRAMMechanism = "SCRAM-SHA-512"
	// SecuredUser is the SCRAM user ClientProperties authenticates as.
	SecuredUser = "weir"
	// BrokerUser is the SCRAM user named in the broker's own JAAS login
	// (inter-broker and controller traffic stay on PLAINTEXT).
	BrokerUser = "admin"

	securedListener  = "SASL_SSL"
	keytoolTimeout   = 60 * time.Second
	certValidityDays = "7"
	// EC P-256 keys: keytool makes them in a fraction of the time RSA
	// takes, and both the JDK and librdkafka's OpenSSL speak ECDSA.
	keyAlgorithm = "EC"
	keyCurve     = "secp256r1"
)

// keytoolFlags make each short keytool JVM start fast.
var keytoolFlags = []string{"-J-XX:TieredStopAtLevel=1", "-J-XX:+UseSerialGC"}

// security is the throwaway TLS material and the SCRAM credentials of a
// secured cluster. Everything lives under dir, inside the cluster's data
// directory.
type security struct {
	dir           string
	storePassword string // of every PKCS12 store and of the keys in them
	keystore      string // broker key and certificate chain (PKCS12)
	truststore    string // the CA certificate (PKCS12)
	caPEM         string // the CA that signed the broker certificate
	brokerPEM     string // the broker certificate
	untrustedPEM  string // a second CA that signed nothing of ours
	adminPassword string
	userPassword  string
}

// StartSecured is Start with Options.Secured set: every node also gets a
// SASL_SSL listener with SCRAM-SHA-512 authentication. See Options.Secured.
func StartSecured(ctx context.Context, o Options) (*Cluster, error) {
	o.Secured = true
	return Start(ctx, o)
}

// Secured reports whether the nodes have a SASL_SSL listener.
func (c *Cluster) Secured() bool { return c.sec != nil }

// SecuredBootstrap returns the comma-separated SASL_SSL addresses, or "" when
// the cluster is not secured.
func (c *Cluster) SecuredBootstrap() string { return c.securedBootstrap }

// ClientProperties returns the librdkafka properties a client needs to
// connect to SecuredBootstrap() as SecuredUser: security.protocol,
// sasl.mechanisms, sasl.username, sasl.password, ssl.ca.location and
// ssl.endpoint.identification.algorithm (https: the broker certificate names
// IP:127.0.0.1 and DNS:localhost). bootstrap.servers is not included. It
// returns a fresh map each call, nil when the cluster is not secured.
func (c *Cluster) ClientProperties() map[string]string {
	if c.sec == nil {
		return nil
	}
	return map[string]string{
		"security.protocol":                     SecuredProtocol,
		"sasl.mechanisms":                       SCRAMMechanism,
		"sasl.username":                         SecuredUser,
		"sasl.password":                         c.sec.userPassword,
		"ssl.ca.location":                       c.sec.caPEM,
		"ssl.endpoint.identification.algorithm": "https",
	}
}

// Password returns the SCRAM password of user (SecuredUser or BrokerUser),
// or "" for another user or when the cluster is not secured.
func (c *Cluster) Password(user string) string {
	if c.sec == nil {
		return ""
	}
	switch user {
	case SecuredUser:
		return c.sec.userPassword
	case BrokerUser:
		return c.sec.adminPassword
	}
	return ""
}

// CAPath returns the PEM file of the throwaway CA that signed the broker
// certificate (the ssl.ca.location of ClientProperties), or "".
func (c *Cluster) CAPath() string {
	if c.sec == nil {
		return ""
	}
	return c.sec.caPEM
}

// UntrustedCAPath returns the PEM file of a second throwaway CA that did not
// sign the broker certificate, for tests of a client that must refuse the
// broker, or "".
func (c *Cluster) UntrustedCAPath() string {
	if c.sec == nil {
		return ""
	}
	return c.sec.untrustedPEM
}

// newSecurity makes the TLS material in dir with the JDK's keytool: a CA, a
// broker key pair whose certificate the CA signs (SAN IP:127.0.0.1 and
// DNS:localhost, serverAuth), the broker keystore and truststore (PKCS12),
// the CA certificate as PEM, and a second, unrelated CA as PEM. It also
// draws the SCRAM passwords.
func newSecurity(ctx context.Context, dir, java string, log io.Writer) (*security, error) {
	keytool, err := findKeytool(java)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("broker: TLS dir: %w", err)
	}
	s := &security{
		dir:          dir,
		keystore:     filepath.Join(dir, "broker.keystore.p12"),
		truststore:   filepath.Join(dir, "broker.truststore.p12"),
		caPEM:        filepath.Join(dir, "ca.pem"),
		brokerPEM:    filepath.Join(dir, "broker.pem"),
		untrustedPEM: filepath.Join(dir, "untrusted-ca.pem"),
	}
	for _, p := range []*string{&s.storePassword, &s.adminPassword, &s.userPassword} {
		if *p, err = randomSecret(); err != nil {
			return nil, err
		}
	}
	tag := filepath.Base(filepath.Dir(dir))
	caStore := filepath.Join(dir, "ca.p12")
	otherStore := filepath.Join(dir, "untrusted-ca.p12")
	csr := filepath.Join(dir, "broker.csr")
	pw := s.storePassword
	store := func(path string) []string {
		return []string{"-keystore", path, "-storetype", "PKCS12", "-storepass", pw}
	}
	genCA := func(alias, store, dname string) []string {
		return []string{"-genkeypair", "-alias", alias, "-keyalg", keyAlgorithm, "-groupname", keyCurve,
			"-validity", certValidityDays, "-dname", dname,
			"-ext", "BasicConstraints:critical=ca:true", "-ext", "KeyUsage:critical=keyCertSign,cRLSign",
			"-keystore", store, "-storetype", "PKCS12", "-storepass", pw, "-keypass", pw}
	}
	start := time.Now()
	k := &keytoolRunner{path: keytool, dir: dir}

	// The unrelated CA does not depend on the rest: make it alongside.
	var wg sync.WaitGroup
	var otherErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		otherErr = k.run(ctx,
			genCA("untrusted-ca", otherStore, "CN=weir untrusted test CA,O=weir "+tag),
			append([]string{"-exportcert", "-rfc", "-alias", "untrusted-ca", "-file", s.untrustedPEM}, store(otherStore)...),
		)
	}()
	err = k.run(ctx,
		genCA("ca", caStore, "CN=weir test CA,O=weir "+tag),
		append([]string{"-exportcert", "-rfc", "-alias", "ca", "-file", s.caPEM}, store(caStore)...),
		append([]string{"-genkeypair", "-alias", "broker", "-keyalg", keyAlgorithm, "-groupname", keyCurve,
			"-validity", certValidityDays, "-dname", "CN=localhost,O=weir " + tag, "-keypass", pw}, store(s.keystore)...),
		append([]string{"-certreq", "-alias", "broker", "-file", csr}, store(s.keystore)...),
		append([]string{"-gencert", "-alias", "ca", "-infile", csr, "-outfile", s.brokerPEM, "-rfc",
			"-validity", certValidityDays,
			"-ext", "SubjectAlternativeName=ip:127.0.0.1,dns:localhost",
			"-ext", "KeyUsage:critical=digitalSignature",
			"-ext", "ExtendedKeyUsage=serverAuth"}, store(caStore)...),
		// The CA first, so the signed reply forms a chain up to it.
		append([]string{"-importcert", "-noprompt", "-alias", "ca", "-file", s.caPEM}, store(s.keystore)...),
		append([]string{"-importcert", "-noprompt", "-alias", "broker", "-file", s.brokerPEM}, store(s.keystore)...),
		append([]string{"-importcert", "-noprompt", "-alias", "ca", "-file", s.caPEM}, store(s.truststore)...),
	)
	wg.Wait()
	if err != nil {
		return nil, err
	}
	if otherErr != nil {
		return nil, otherErr
	}
	fmt.Fprintf(log, "kafka: TLS material (CA, broker keystore and truststore, untrusted CA) made with keytool in %s after %s\n",
		dir, time.Since(start).Round(10*time.Millisecond))
	return s, nil
}

type keytoolRunner struct {
	path string
	dir  string
}

// run runs keytool once per argument list, in order, stopping at the first
// failure.
func (k *keytoolRunner) run(ctx context.Context, calls ...[]string) error {
	for _, args := range calls {
		if err := k.runOne(ctx, args); err != nil {
			return err
		}
	}
	return nil
}

func (k *keytoolRunner) runOne(ctx context.Context, args []string) error {
	ctx, cancel := context.WithTimeout(ctx, keytoolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, k.path, append(append([]string{}, keytoolFlags...), args...)...)
	cmd.Dir = k.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("broker: keytool %s: %w\n%s", args[0], err, strings.TrimSpace(lastLines(out.Bytes(), logTailLines)))
	}
	return nil
}

// findKeytool returns keytool from PATH or from the JDK that java belongs to.
func findKeytool(java string) (string, error) {
	if p, err := exec.LookPath("keytool"); err == nil {
		return p, nil
	}
	real, err := filepath.EvalSymlinks(java)
	if err != nil {
		return "", fmt.Errorf("broker: keytool not on PATH and %s does not resolve: %w", java, err)
	}
	p := filepath.Join(filepath.Dir(real), "keytool")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("broker: keytool (JDK) needed for the SASL_SSL listener: not on PATH nor next to %s: %w", real, err)
	}
	return p, nil
}

// randomSecret returns 32 random hex digits: safe inside properties files,
// JAAS options and the storage tool's --add-scram syntax.
func randomSecret() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("broker: random secret: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// listenerProps returns the server.properties entries of the SASL_SSL
// listener (on top of the PLAINTEXT and CONTROLLER ones).
func (s *security) listenerProps() map[string]string {
	p := "listener.name." + strings.ToLower(securedListener) + "."
	mech := strings.ToLower(SCRAMMechanism)
	return map[string]string{
		p + "sasl.enabled.mechanisms": SCRAMMechanism,
		p + mech + ".sasl.jaas.config": fmt.Sprintf(
			`org.apache.kafka.common.security.scram.ScramLoginModule required username="%s" password="%s";`,
			BrokerUser, s.adminPassword),
		p + "ssl.keystore.type":       "PKCS12",
		p + "ssl.keystore.location":   s.keystore,
		p + "ssl.keystore.password":   s.storePassword,
		p + "ssl.key.password":        s.storePassword,
		p + "ssl.truststore.type":     "PKCS12",
		p + "ssl.truststore.location": s.truststore,
		p + "ssl.truststore.password": s.storePassword,
		p + "ssl.client.auth":         "none",
	}
}

// scramFormatArgs returns the storage tool arguments that create the SCRAM
// users in the bootstrap metadata.
func (s *security) scramFormatArgs() []string {
	return []string{
		"--add-scram", fmt.Sprintf("%s=[name=%s,password=%s]", SCRAMMechanism, BrokerUser, s.adminPassword),
		"--add-scram", fmt.Sprintf("%s=[name=%s,password=%s]", SCRAMMechanism, SecuredUser, s.userPassword),
	}
}
