// Package pgtest starts throwaway PostgreSQL servers for tests: initdb into
// a temporary directory, a server listening on 127.0.0.1 on a free port only
// (its unix socket in the same directory), max_prepared_transactions = 64
// and fsync off. The binaries come from scripts/postgres.sh (make test runs
// it; Start runs it too), which installs Debian's postgresql when missing.
//
// The server refuses to run as root: when the test runs as root, initdb and
// the server run as the user postgres (or nobody when there is none), and
// the data directory belongs to that user.
//
// A server that cannot start fails the test with the reason and the tail of
// the server log; nothing is skipped.
package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/weirstream/weir/internal/testport"
)

// Timeouts of the harness: the script (which may install PostgreSQL),
// initdb, and a server start or stop.
const (
	scriptTimeout = 15 * time.Minute
	initdbTimeout = 2 * time.Minute
	startTimeout  = time.Minute
	stopTimeout   = time.Minute
)

// Server is one throwaway PostgreSQL server. Its methods fail the test on
// error (Stop, Restart and Conn need a server from Start).
type Server struct {
	t       testing.TB
	bin     string
	root    string // temporary directory of everything
	dir     string // data directory
	sock    string // unix socket directory
	logPath string
	port    int
	cred    *syscall.Credential
	// settings are extra "-c" settings.
	settings []string
	// Version is what the server reports, e.g. "PostgreSQL 15.18 ...".
	Version string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Start starts a server for t; it is stopped when t ends. settings are
// extra server settings ("name=value"), applied after the harness's own
// (so "max_prepared_transactions=0" overrides its 64).
func Start(t testing.TB, settings ...string) *Server {
	t.Helper()
	s, err := start(t, settings)
	if err != nil {
		t.Fatalf("pgtest: PostgreSQL did not start: %v", err)
	}
	t.Cleanup(func() { s.stop(false) })
	t.Logf("pgtest: %s on 127.0.0.1:%d (data %s)", s.Version, s.port, s.dir)
	return s
}

// Launch starts a server outside a test (the benchmark harness); Close
// stops it and removes its files.
func Launch(settings ...string) (*Server, error) {
	return start(nil, settings)
}

// Close stops a server from Launch and removes its directory.
func (s *Server) Close() error {
	err := s.stop(false)
	if s.root != "" {
		os.RemoveAll(s.root)
	}
	return err
}

func start(t testing.TB, settings []string) (*Server, error) {
	bin, version, err := binaries()
	if err != nil {
		return nil, err
	}
	s := &Server{t: t, bin: bin, Version: version, settings: settings}
	if os.Geteuid() == 0 {
		if s.cred, err = unprivileged(); err != nil {
			return nil, err
		}
	}
	// Not t.TempDir: its parents are private to root, and the server may
	// run as another user.
	root, err := os.MkdirTemp("", "weir-pgtest-")
	if err != nil {
		return nil, fmt.Errorf("temporary directory: %w", err)
	}
	s.root = root
	if t != nil {
		t.Cleanup(func() { os.RemoveAll(root) })
	}
	ok := false
	defer func() {
		if !ok && t == nil {
			os.RemoveAll(root)
		}
	}()
	s.dir = filepath.Join(root, "data")
	s.sock = filepath.Join(root, "sock")
	s.logPath = filepath.Join(root, "server.log")
	for _, d := range []string{s.dir, s.sock} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return nil, err
		}
	}
	if s.cred != nil {
		if err := os.Chmod(root, 0o755); err != nil {
			return nil, err
		}
		for _, p := range []string{s.dir, s.sock} {
			if err := os.Chown(p, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
				return nil, fmt.Errorf("chown %s to the server's user: %w", p, err)
			}
		}
		f, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, err
		}
		f.Close()
		if err := os.Chown(s.logPath, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), initdbTimeout)
	defer cancel()
	initdb := s.command(ctx, filepath.Join(bin, "initdb"), "-D", s.dir, "-U", "postgres",
		"--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %v: %s", err, tail(out, 5))
	}
	var lastErr error
	for range 3 { // the free port may be taken between probe and bind
		if s.port, err = freePort(); err != nil {
			return nil, err
		}
		if lastErr = s.launch(); lastErr == nil {
			ok = true
			return s, nil
		}
	}
	return nil, lastErr
}

// launch starts the server process and waits until it accepts connections.
func (s *Server) launch() error {
	args := []string{"-D", s.dir,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "port=" + strconv.Itoa(s.port),
		"-c", "unix_socket_directories=" + s.sock,
		"-c", "max_prepared_transactions=64",
		"-c", "max_connections=200",
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "logging_collector=off",
		"-c", "log_min_messages=warning",
	}
	for _, kv := range s.settings {
		args = append(args, "-c", kv)
	}
	cmd := s.command(context.Background(), filepath.Join(s.bin, "postgres"), args...)
	logf, err := os.OpenFile(s.logPath, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-done:
			return fmt.Errorf("server exited at start (%v); log tail: %s", cmd.ProcessState, s.LogTail(8))
		default:
		}
		c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
		if err == nil {
			c.Close()
			if err := s.ready(); err == nil {
				return nil
			} else if time.Now().After(deadline) {
				s.stop(true)
				return fmt.Errorf("server on %s not ready after %v: %v; log tail: %s", s.Addr(), startTimeout, err, s.LogTail(8))
			}
		} else if time.Now().After(deadline) {
			s.stop(true)
			return fmt.Errorf("server not listening on %s after %v; log tail: %s", s.Addr(), startTimeout, s.LogTail(8))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ready runs pg_isready against the server.
func (s *Server) ready() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(s.bin, "pg_isready"), "-h", "127.0.0.1", "-p", strconv.Itoa(s.port), "-U", "postgres").CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_isready: %v: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// command runs name as the server's user.
func (s *Server) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	cmd.Env = append(os.Environ(), "LC_ALL=C", "LANG=C")
	return cmd
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// DSN is a connection string for the superuser postgres on database
// postgres (trust authentication, no password).
func (s *Server) DSN() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.port)
}

// Stop stops the server (fast shutdown: open transactions are rolled
// back, prepared ones survive).
func (s *Server) Stop() {
	s.t.Helper()
	if err := s.stop(false); err != nil {
		s.t.Fatalf("pgtest: stop: %v", err)
	}
}

// Restart stops the server (fast shutdown) and starts it again on the same
// port and data directory.
func (s *Server) Restart() {
	s.t.Helper()
	if err := s.stop(false); err != nil {
		s.t.Fatalf("pgtest: restart: stop: %v", err)
	}
	if err := s.launch(); err != nil {
		s.t.Fatalf("pgtest: restart: %v", err)
	}
}

func (s *Server) stop(kill bool) error {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	sig := syscall.SIGINT // fast shutdown
	if kill {
		sig = syscall.SIGQUIT // immediate shutdown
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
		return nil
	case <-time.After(stopTimeout):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return fmt.Errorf("server did not stop within %v; killed; log tail: %s", stopTimeout, s.LogTail(8))
	}
}

// LogTail returns the last n lines of the server log, on one line.
func (s *Server) LogTail(n int) string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return tail(b, n)
}

func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

var (
	binOnce            sync.Once
	binDir, binVersion string
	binErr             error
)

// binaries runs scripts/postgres.sh once per process.
func binaries() (string, string, error) {
	binOnce.Do(func() {
		_, file, _, ok := runtime.Caller(0)
		if !ok {
			binErr = errors.New("cannot locate scripts/postgres.sh: no caller information")
			return
		}
		script := filepath.Join(filepath.Dir(file), "..", "..", "scripts", "postgres.sh")
		ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
		defer cancel()
		var stdout, stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, "bash", script)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			why := tail(stderr.Bytes(), 2)
			if why == "" {
				why = err.Error()
			}
			binErr = fmt.Errorf("scripts/postgres.sh: %s", why)
			return
		}
		lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
		if len(lines) < 2 {
			binErr = fmt.Errorf("scripts/postgres.sh printed %q, not the bin directory and the version", stdout.String())
			return
		}
		binDir, binVersion = lines[len(lines)-2], lines[len(lines)-1]
	})
	return binDir, binVersion, binErr
}

// unprivileged returns the credentials of the user postgres, or nobody.
func unprivileged() (*syscall.Credential, error) {
	var errs []string
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil {
			errs = append(errs, fmt.Sprintf("user %s: uid %q gid %q", name, u.Uid, u.Gid))
			continue
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
	}
	return nil, fmt.Errorf("running as root and no unprivileged user to run the server as (%s): create the user postgres", strings.Join(errs, "; "))
}

// freePort is a free port outside the ephemeral range: a server the test
// restarts binds it again (see package testport).
func freePort() (int, error) {
	ports, err := testport.Free(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// Conn connects to the server as postgres; the connection is closed when
// the test ends.
func (s *Server) Conn(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.DSN())
	if err != nil {
		t.Fatalf("pgtest: connect: %v; log tail: %s", err, s.LogTail(5))
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c.Close(ctx)
	})
	return c
}
