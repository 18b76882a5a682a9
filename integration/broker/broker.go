package broker

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/weirstream/weir/internal/testport"
)

// KafkaVersion is the pinned Apache Kafka release; scripts/kafka.sh fetches
// the same one.
const KafkaVersion = "4.1.1"

const (
	defaultReadyTimeout = 120 * time.Second
	maxBrokers          = 9
	stopGrace           = 20 * time.Second
	killWait            = 30 * time.Second
	formatTimeout       = 90 * time.Second
	fetchTimeout        = 15 * time.Minute
	pollInterval        = 200 * time.Millisecond
	logTailLines        = 20
	storageToolMain     = "kafka.tools.StorageTool"
	brokerMain          = "kafka.Kafka"
)

// jvmFlags keep each broker light on a small (2-core) machine: a modest heap,
// the serial collector and only the C1 compiler, which also starts faster.
var jvmFlags = []string{
	"-Xms256m", "-Xmx768m",
	"-XX:+UseSerialGC",
	"-XX:TieredStopAtLevel=1",
	"-XX:+ExitOnOutOfMemoryError",
	"-Djava.awt.headless=true",
}

// Options configures Start.
type Options struct {
	// Brokers is the number of nodes, each a combined broker and KRaft
	// controller: 1 (the default when zero) or a quorum such as 3.
	Brokers int
	// Dir is the data directory the cluster owns (required). Node i keeps
	// its configuration, data and server.log under Dir/node-<i>.
	Dir string
	// Log receives progress lines; nil discards them.
	Log io.Writer
	// ExtraConfig overrides or adds server.properties entries on every
	// node, e.g. "transaction.max.timeout.ms".
	ExtraConfig map[string]string
	// ReadyTimeout bounds each wait for brokers to become ready (in Start
	// and StartBroker); zero means 120 s. Fetching the release is not
	// counted.
	ReadyTimeout time.Duration
	// JVMFlags, when not empty, replace the brokers' default JVM flags
	// (a small heap, the serial collector and only the C1 compiler, which
	// suit tests on a small machine). Benchmarks pass production-like
	// flags (BenchJVMFlags).
	JVMFlags []string
	// Secured, when true, gives every node a third listener, SASL_SSL on
	// 127.0.0.1, with SCRAM-SHA-512 authentication and no authorizer.
	// Start makes a throwaway CA and broker certificate (SAN IP:127.0.0.1
	// and DNS:localhost) with the JDK's keytool under Dir/tls, and creates
	// the SCRAM users BrokerUser and SecuredUser with random passwords when
	// it formats storage. Inter-broker and controller traffic, Bootstrap()
	// and the admin calls stay on PLAINTEXT; clients reach the secured
	// listener at SecuredBootstrap() with ClientProperties().
	Secured bool
}

// BenchJVMFlags are production-like broker JVM flags for benchmarks: the
// G1 collector and the full JIT, as Kafka's own start scripts use, with a
// 1 GiB heap.
var BenchJVMFlags = []string{
	"-Xms1g", "-Xmx1g",
	"-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
	"-XX:InitiatingHeapOccupancyPercent=35",
	"-XX:+ExitOnOutOfMemoryError",
	"-Djava.awt.headless=true",
}

// Cluster is a set of running Kafka nodes started by Start.
type Cluster struct {
	opts      Options
	libs      string
	java      string
	clusterID string
	version   string
	bootstrap string
	nodes     []*node

	sec              *security // nil unless Options.Secured
	securedBootstrap string

	admin *kgo.Client

	mu      sync.Mutex // guards the process fields of nodes and stopped
	stopped bool
}

type node struct {
	id             int
	dir            string
	brokerPort     int
	controllerPort int
	securedPort    int // 0 unless Options.Secured
	dirID          string

	// Guarded by Cluster.mu.
	proc *process
}

// process is one run of a node's JVM.
type process struct {
	cmd     *exec.Cmd
	console *os.File
	done    chan struct{} // closed when the process has exited
	err     error         // exit status; valid after done is closed
}

func (n *node) brokerAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.brokerPort)) }
func (n *node) securedAddr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.securedPort))
}
func (n *node) controllerAddr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.controllerPort))
}
func (n *node) propsPath() string  { return filepath.Join(n.dir, "server.properties") }
func (n *node) log4jPath() string  { return filepath.Join(n.dir, "log4j2.properties") }
func (n *node) serverLog() string  { return filepath.Join(n.dir, "server.log") }
func (n *node) consoleLog() string { return filepath.Join(n.dir, "console.log") }

// Start fetches the pinned Kafka release if it is not cached, formats storage
// for o.Brokers nodes under o.Dir, starts them and waits until they are ready.
// On error nothing is left running.
func Start(ctx context.Context, o Options) (*Cluster, error) {
	if o.Brokers == 0 {
		o.Brokers = 1
	}
	if o.Brokers < 1 || o.Brokers > maxBrokers {
		return nil, fmt.Errorf("broker: Brokers = %d, want 1..%d", o.Brokers, maxBrokers)
	}
	if o.Dir == "" {
		return nil, errors.New("broker: Options.Dir is required")
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = defaultReadyTimeout
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("broker: data dir %q: %w", o.Dir, err)
	}
	o.Dir = dir

	java, err := exec.LookPath("java")
	if err != nil {
		return nil, fmt.Errorf("broker: java not found on PATH (a JDK 17+ runs the broker): %w", err)
	}
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	libs, err := ensureLibs(ctx, root, o.Log)
	if err != nil {
		return nil, err
	}

	c := &Cluster{opts: o, libs: libs, java: java}
	if c.clusterID, err = newUUID(); err != nil {
		return nil, err
	}
	if o.Secured {
		if c.sec, err = newSecurity(ctx, filepath.Join(dir, "tls"), java, o.Log); err != nil {
			return nil, err
		}
	}
	perNode := 2
	if o.Secured {
		perNode = 3
	}
	ports, err := freePorts(perNode * o.Brokers)
	if err != nil {
		return nil, err
	}
	var addrs, securedAddrs []string
	for i := 0; i < o.Brokers; i++ {
		dirID, err := newUUID()
		if err != nil {
			return nil, err
		}
		n := &node{
			id:             i,
			dir:            filepath.Join(dir, fmt.Sprintf("node-%d", i)),
			brokerPort:     ports[perNode*i],
			controllerPort: ports[perNode*i+1],
			dirID:          dirID,
		}
		if o.Secured {
			n.securedPort = ports[perNode*i+2]
			securedAddrs = append(securedAddrs, n.securedAddr())
		}
		c.nodes = append(c.nodes, n)
		addrs = append(addrs, n.brokerAddr())
	}
	c.bootstrap = strings.Join(addrs, ",")
	c.securedBootstrap = strings.Join(securedAddrs, ",")

	for _, n := range c.nodes {
		if err := c.writeConfig(n); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(o.Log, "kafka: formatting %d node(s) in %s\n", o.Brokers, dir)
	if err := c.formatAll(ctx); err != nil {
		return nil, err
	}

	begin := time.Now()
	c.admin, err = kgo.NewClient(
		kgo.SeedBrokers(addrs...),
		kgo.DialTimeout(5*time.Second),
		kgo.RetryTimeout(10*time.Second),
	)
	if err != nil {
		return nil, fmt.Errorf("broker: admin client: %w", err)
	}
	c.mu.Lock()
	for _, n := range c.nodes {
		if o.Secured {
			fmt.Fprintf(o.Log, "kafka: starting node %d (broker %s, %s %s, controller %s)\n", n.id, n.brokerAddr(), securedListener, n.securedAddr(), n.controllerAddr())
		} else {
			fmt.Fprintf(o.Log, "kafka: starting node %d (broker %s, controller %s)\n", n.id, n.brokerAddr(), n.controllerAddr())
		}
		if err := c.launchLocked(n); err != nil {
			c.mu.Unlock()
			_ = c.Stop()
			return nil, err
		}
	}
	c.mu.Unlock()

	rctx, cancel := context.WithTimeout(ctx, o.ReadyTimeout)
	defer cancel()
	if err := c.waitReady(rctx); err != nil {
		tail := c.logTails()
		_ = c.Stop()
		return nil, fmt.Errorf("broker: %d-node cluster not ready: %w%s", o.Brokers, err, tail)
	}
	c.version = c.detectVersion()
	if o.Secured {
		fmt.Fprintf(o.Log, "kafka: Apache Kafka %s ready at %s (%s %s at %s) after %s\n", c.version, c.bootstrap, securedListener, SCRAMMechanism, c.securedBootstrap, time.Since(begin).Round(10*time.Millisecond))
	} else {
		fmt.Fprintf(o.Log, "kafka: Apache Kafka %s ready at %s after %s\n", c.version, c.bootstrap, time.Since(begin).Round(10*time.Millisecond))
	}
	return c, nil
}

// Bootstrap returns the comma-separated broker addresses for clients.
func (c *Cluster) Bootstrap() string { return c.bootstrap }

// Version returns the Kafka version the brokers report in their logs
// (AppInfoParser's "Kafka version"), or the one in the jar name.
func (c *Cluster) Version() string { return c.version }

// NumBrokers returns the number of nodes, running or not.
func (c *Cluster) NumBrokers() int { return len(c.nodes) }

// LibsDir returns the directory of Kafka's jars, for running Kafka's own
// tools with java -cp LibsDir()/*.
func (c *Cluster) LibsDir() string { return c.libs }

// Dir returns the cluster's data directory.
func (c *Cluster) Dir() string { return c.opts.Dir }

// LogPath returns the path of node i's server log.
func (c *Cluster) LogPath(i int) string {
	if i < 0 || i >= len(c.nodes) {
		return ""
	}
	return c.nodes[i].serverLog()
}

// Stop stops every node (SIGTERM, then SIGKILL after a grace period), waits
// for them to exit and closes the admin client. It is idempotent.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return nil
	}
	c.stopped = true
	var procs []*process
	for _, n := range c.nodes {
		if p := n.proc; p != nil && !p.exited() {
			_ = p.signal(syscall.SIGTERM)
			procs = append(procs, p)
		}
	}
	c.mu.Unlock()

	var errs []error
	if !waitAll(procs, stopGrace) {
		// Give up on a clean stop: kill the rest.
		for _, p := range procs {
			_ = p.signal(syscall.SIGKILL)
		}
		if !waitAll(procs, killWait) {
			errs = append(errs, fmt.Errorf("broker: a node did not exit within %s of SIGKILL", killWait))
		}
	}
	for _, p := range procs {
		p.closeConsole()
	}
	if c.admin != nil {
		c.admin.Close()
	}
	return errors.Join(errs...)
}

// KillBroker kills node i with SIGKILL and waits until it has exited.
func (c *Cluster) KillBroker(i int) error {
	p, err := c.running(i)
	if err != nil {
		return err
	}
	if err := p.signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("broker: kill node %d: %w", i, err)
	}
	select {
	case <-p.done:
	case <-time.After(killWait):
		return fmt.Errorf("broker: node %d did not exit within %s of SIGKILL", i, killWait)
	}
	p.closeConsole()
	return nil
}

// StopBroker stops node i cleanly with SIGTERM and waits until it has exited.
// If it does not exit within the grace period it is killed and an error is
// returned.
func (c *Cluster) StopBroker(i int) error {
	p, err := c.running(i)
	if err != nil {
		return err
	}
	if err := p.signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("broker: stop node %d: %w", i, err)
	}
	select {
	case <-p.done:
		p.closeConsole()
		return nil
	case <-time.After(stopGrace):
	}
	_ = p.signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(killWait):
	}
	p.closeConsole()
	return fmt.Errorf("broker: node %d did not stop within %s of SIGTERM; killed%s", i, stopGrace, c.logTail(c.nodes[i]))
}

// StartBroker restarts node i, which must have been stopped or killed, with
// the same ports and data, and waits until it is registered again and serves
// metadata that includes itself.
func (c *Cluster) StartBroker(i int) error {
	if i < 0 || i >= len(c.nodes) {
		return fmt.Errorf("broker: node %d out of range [0,%d)", i, len(c.nodes))
	}
	n := c.nodes[i]
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return errors.New("broker: cluster is stopped")
	}
	if n.proc != nil && !n.proc.exited() {
		c.mu.Unlock()
		return fmt.Errorf("broker: node %d is already running", i)
	}
	err := c.launchLocked(n)
	c.mu.Unlock()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.ReadyTimeout)
	defer cancel()
	if err := c.waitNodeServing(ctx, n); err != nil {
		return fmt.Errorf("broker: restarted node %d not ready: %w%s", i, err, c.logTail(n))
	}
	return nil
}

// running returns node i's live process.
func (c *Cluster) running(i int) (*process, error) {
	if i < 0 || i >= len(c.nodes) {
		return nil, fmt.Errorf("broker: node %d out of range [0,%d)", i, len(c.nodes))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.nodes[i].proc
	if p == nil || p.exited() {
		return nil, fmt.Errorf("broker: node %d is not running", i)
	}
	return p, nil
}

func (c *Cluster) rf() int { return min(3, len(c.nodes)) }

// writeConfig writes node n's server.properties and log4j2.properties.
func (c *Cluster) writeConfig(n *node) error {
	if err := os.MkdirAll(filepath.Join(n.dir, "data"), 0o755); err != nil {
		return fmt.Errorf("broker: node %d dir: %w", n.id, err)
	}
	var voters []string
	for _, m := range c.nodes {
		voters = append(voters, m.controllerAddr())
	}
	rf := c.rf()
	minISR := max(1, rf-1)
	props := map[string]string{
		"process.roles":                       "broker,controller",
		"node.id":                             strconv.Itoa(n.id),
		"controller.quorum.bootstrap.servers": strings.Join(voters, ","),
		"listeners":                           fmt.Sprintf("PLAINTEXT://%s,CONTROLLER://%s", n.brokerAddr(), n.controllerAddr()),
		"advertised.listeners":                fmt.Sprintf("PLAINTEXT://%s,CONTROLLER://%s", n.brokerAddr(), n.controllerAddr()),
		"controller.listener.names":           "CONTROLLER",
		"inter.broker.listener.name":          "PLAINTEXT",
		"listener.security.protocol.map":      "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
		"log.dirs":                            filepath.Join(n.dir, "data"),

		"auto.create.topics.enable":                        "false",
		"num.partitions":                                   "1",
		"default.replication.factor":                       strconv.Itoa(rf),
		"min.insync.replicas":                              "1",
		"offsets.topic.replication.factor":                 strconv.Itoa(rf),
		"offsets.topic.num.partitions":                     "10",
		"transaction.state.log.replication.factor":         strconv.Itoa(rf),
		"transaction.state.log.min.isr":                    strconv.Itoa(minISR),
		"transaction.state.log.num.partitions":             "10",
		"share.coordinator.state.topic.replication.factor": strconv.Itoa(rf),
		"share.coordinator.state.topic.min.isr":            strconv.Itoa(minISR),
		"group.initial.rebalance.delay.ms":                 "0",
		// Test records carry old event times as their timestamps; time-based
		// retention would delete them (even the active segment) mid-test.
		"log.retention.ms": "-1",

		"num.network.threads":               "2",
		"num.io.threads":                    "4",
		"num.recovery.threads.per.data.dir": "1",
		"log.cleaner.threads":               "1",
		"log.cleaner.dedupe.buffer.size":    strconv.Itoa(8 << 20),
		"background.threads":                "4",
		"controlled.shutdown.enable":        "true",
		"unclean.leader.election.enable":    "false",
	}
	if c.sec != nil {
		listeners := fmt.Sprintf("PLAINTEXT://%s,%s://%s,CONTROLLER://%s", n.brokerAddr(), securedListener, n.securedAddr(), n.controllerAddr())
		props["listeners"] = listeners
		props["advertised.listeners"] = listeners
		props["listener.security.protocol.map"] = fmt.Sprintf("PLAINTEXT:PLAINTEXT,%s:%s,CONTROLLER:PLAINTEXT", securedListener, SecuredProtocol)
		for k, v := range c.sec.listenerProps() {
			props[k] = v
		}
	}
	for k, v := range c.opts.ExtraConfig {
		props[k] = v
	}
	keys := make([]string, 0, len(props))
	for k := range props {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Written by weir's integration/broker for node %d.\n", n.id)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s\n", k, props[k])
	}
	if err := os.WriteFile(n.propsPath(), b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("broker: node %d server.properties: %w", n.id, err)
	}

	log4j := strings.Join([]string{
		"status = warn",
		"appender.file.type = File",
		"appender.file.name = file",
		"appender.file.fileName = " + n.serverLog(),
		"appender.file.layout.type = PatternLayout",
		"appender.file.layout.pattern = [%d] %p %m (%c)%n",
		"rootLogger.level = info",
		"rootLogger.appenderRef.file.ref = file",
		"logger.request.name = kafka.request.logger",
		"logger.request.level = warn",
		"logger.authorizer.name = kafka.authorizer.logger",
		"logger.authorizer.level = warn",
		"",
	}, "\n")
	if err := os.WriteFile(n.log4jPath(), []byte(log4j), 0o644); err != nil {
		return fmt.Errorf("broker: node %d log4j2.properties: %w", n.id, err)
	}
	return nil
}

// formatAll formats every node's storage concurrently.
func (c *Cluster) formatAll(ctx context.Context) error {
	var quorum []string
	if len(c.nodes) == 1 {
		quorum = []string{"--standalone"}
	} else {
		var ctrls []string
		for _, n := range c.nodes {
			ctrls = append(ctrls, fmt.Sprintf("%d@%s:%s", n.id, n.controllerAddr(), n.dirID))
		}
		quorum = []string{"--initial-controllers", strings.Join(ctrls, ",")}
	}
	errs := make([]error, len(c.nodes))
	var wg sync.WaitGroup
	for i, n := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.format(ctx, n, quorum)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (c *Cluster) format(ctx context.Context, n *node, quorum []string) error {
	ctx, cancel := context.WithTimeout(ctx, formatTimeout)
	defer cancel()
	args := append(c.jvmArgs(n), storageToolMain, "format",
		"--config", n.propsPath(), "--cluster-id", c.clusterID)
	args = append(args, quorum...)
	if c.sec != nil {
		args = append(args, c.sec.scramFormatArgs()...)
	}
	cmd := exec.CommandContext(ctx, c.java, args...)
	cmd.Dir = n.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	_ = os.WriteFile(filepath.Join(n.dir, "format.log"), out, 0o644)
	if err != nil {
		return fmt.Errorf("broker: format storage of node %d (%s format): %w\n%s", n.id, storageToolMain, err, lastLines(out, logTailLines))
	}
	return nil
}

func (c *Cluster) jvmArgs(n *node) []string {
	flags := jvmFlags
	if len(c.opts.JVMFlags) > 0 {
		flags = c.opts.JVMFlags
	}
	args := append([]string{}, flags...)
	return append(args,
		"-Dlog4j2.configurationFile="+n.log4jPath(),
		"-Dkafka.logs.dir="+n.dir,
		"-cp", filepath.Join(c.libs, "*"),
	)
}

// launchLocked starts node n's JVM. c.mu must be held.
func (c *Cluster) launchLocked(n *node) error {
	console, err := os.OpenFile(n.consoleLog(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("broker: node %d console log: %w", n.id, err)
	}
	args := append(c.jvmArgs(n), brokerMain, n.propsPath())
	cmd := exec.Command(c.java, args...)
	cmd.Dir = n.dir
	cmd.Stdout = console
	cmd.Stderr = console
	// Own process group so a kill reaches any child; die with the test.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		console.Close()
		return fmt.Errorf("broker: start node %d: %w", n.id, err)
	}
	p := &process{cmd: cmd, console: console, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	n.proc = p
	return nil
}

// waitAll waits up to d for every process to exit and reports whether they did.
func waitAll(procs []*process, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for _, p := range procs {
		select {
		case <-p.done:
		case <-t.C:
			return false
		}
	}
	return true
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the process group.
func (p *process) signal(sig syscall.Signal) error {
	if p.exited() {
		return nil
	}
	err := syscall.Kill(-p.cmd.Process.Pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

func (p *process) closeConsole() {
	if p.console != nil {
		p.console.Close()
	}
}

// exitedNode returns an error for the first node whose process has exited.
func (c *Cluster) exitedNode() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		if p := n.proc; p != nil && p.exited() {
			return fmt.Errorf("node %d exited: %v", n.id, p.err)
		}
	}
	return nil
}

// detectVersion reads the version AppInfoParser logged at startup.
func (c *Cluster) detectVersion() string {
	if f, err := os.Open(c.nodes[0].serverLog()); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if i := strings.Index(line, "Kafka version: "); i >= 0 {
				v := strings.Fields(line[i+len("Kafka version: "):])
				if len(v) > 0 {
					return v[0]
				}
			}
		}
	}
	matches, _ := filepath.Glob(filepath.Join(c.libs, "kafka_2.13-*.jar"))
	for _, m := range matches {
		v := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(m), "kafka_2.13-"), ".jar")
		if v != "" && !strings.ContainsAny(v, "-") {
			return v
		}
	}
	return KafkaVersion
}

// logTails returns the last lines of every node's logs, for error messages.
func (c *Cluster) logTails() string {
	var b strings.Builder
	for _, n := range c.nodes {
		b.WriteString(c.logTail(n))
	}
	return b.String()
}

func (c *Cluster) logTail(n *node) string {
	var b strings.Builder
	for _, path := range []string{n.serverLog(), n.consoleLog()} {
		data, err := os.ReadFile(path)
		if err != nil || len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n--- last lines of %s ---\n%s", path, lastLines(data, logTailLines))
	}
	return b.String()
}

func lastLines(data []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// RepoRoot returns the directory holding go.mod, found by walking up from
// the working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("broker: working directory: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("broker: no go.mod found above the working directory")
		}
		dir = parent
	}
}

// cacheDir mirrors scripts/kafka.sh: ${WEIR_KAFKA_CACHE:-<root>/.cache/kafka}.
func cacheDir(root string) string {
	if d := os.Getenv("WEIR_KAFKA_CACHE"); d != "" {
		return d
	}
	return filepath.Join(root, ".cache", "kafka")
}

// ensureLibs returns the libs directory of the pinned release, running
// scripts/kafka.sh when the cache is not complete.
func ensureLibs(ctx context.Context, root string, log io.Writer) (string, error) {
	libs := filepath.Join(cacheDir(root), KafkaVersion, "libs")
	stamp := filepath.Join(cacheDir(root), KafkaVersion, ".complete")
	jar := filepath.Join(libs, "kafka_2.13-"+KafkaVersion+".jar")
	if _, err := os.Stat(stamp); err == nil {
		if _, err := os.Stat(jar); err == nil {
			return libs, nil
		}
	}
	fmt.Fprintf(log, "kafka: fetching Apache Kafka %s with scripts/kafka.sh\n", KafkaVersion)
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts", "kafka.sh"))
	cmd.Dir = root
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		why := strings.TrimSpace(lastLines(stderr.Bytes(), 3))
		if why == "" {
			why = err.Error()
		}
		return "", fmt.Errorf("broker: fetching Kafka %s failed: %s", KafkaVersion, why)
	}
	out := strings.TrimSpace(lastLines(stdout.Bytes(), 1))
	if out != "" {
		libs = out
	}
	if _, err := os.Stat(filepath.Join(libs, "kafka_2.13-"+KafkaVersion+".jar")); err != nil {
		return "", fmt.Errorf("broker: scripts/kafka.sh succeeded but %s has no kafka jar: %w", libs, err)
	}
	return libs, nil
}

// freePorts reserves n distinct free TCP ports on 127.0.0.1, outside the
// ephemeral range: a stopped broker's port must still be free when the
// test starts it again (see package testport).
func freePorts(n int) ([]int, error) {
	ports, err := testport.Free(n)
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	return ports, nil
}

// newUUID returns a random Kafka Uuid in its base64 string form.
func newUUID() (string, error) {
	for {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", fmt.Errorf("broker: random uuid: %w", err)
		}
		s := base64.RawURLEncoding.EncodeToString(b[:])
		// Kafka never hands out ids that start with '-' (they read as flags).
		if s[0] != '-' {
			return s, nil
		}
	}
}
