package obs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewHandler serves a job's status:
//
//	/metrics               Prometheus text format, from g (nil: no /metrics)
//	/api/job               JobStatus
//	/api/checkpoints       []CheckpointStatus, oldest first
//	/api/operators/{id}    OperatorStatus (404 for an unknown id)
//	/api/throughput        []Sample, oldest first
//	/                      page (nil: a plain-text index of the above)
//
// Every /api/ answer is JSON; errors are JSON too: {"error": "..."}.
func NewHandler(p Provider, g prometheus.Gatherer, page http.Handler) http.Handler {
	mux := http.NewServeMux()
	if g != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	}
	mux.HandleFunc("GET /api/job", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, p.Job())
	})
	mux.HandleFunc("GET /api/checkpoints", func(w http.ResponseWriter, r *http.Request) {
		cs := p.Checkpoints()
		if cs == nil {
			cs = []CheckpointStatus{}
		}
		writeJSON(w, http.StatusOK, cs)
	})
	mux.HandleFunc("GET /api/operators/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		op, ok := p.Operator(id)
		if !ok {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no operator %q: GET /api/job lists the operator ids", id)})
			return
		}
		writeJSON(w, http.StatusOK, op)
	})
	mux.HandleFunc("GET /api/throughput", func(w http.ResponseWriter, r *http.Request) {
		s := p.Throughput()
		if s == nil {
			s = []Sample{}
		}
		writeJSON(w, http.StatusOK, s)
	})
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "unknown path " + r.URL.Path + ": try /api/job, /api/checkpoints, /api/operators/{id}, /api/throughput"})
	})
	if page != nil {
		mux.Handle("/", page)
	} else {
		mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprintln(w, "weir: /metrics /api/job /api/checkpoints /api/operators/{id} /api/throughput")
		})
	}
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away: nothing to do
}

// ListenAddr checks and completes an --http address: a bare port or ":port"
// binds to 127.0.0.1, never to every interface by accident.
func ListenAddr(addr string) (string, error) {
	a := strings.TrimSpace(addr)
	if a == "" {
		return "", errors.New("empty address: give host:port, e.g. 127.0.0.1:8081")
	}
	if !strings.Contains(a, ":") {
		a = ":" + a
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return "", fmt.Errorf("%q is not host:port (e.g. 127.0.0.1:8081): %w", addr, err)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	if port == "" {
		return "", fmt.Errorf("%q has no port: give host:port, e.g. 127.0.0.1:8081 (port 0 picks a free one)", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return "", fmt.Errorf("%q: port %q is not a number from 0 to 65535: give host:port, e.g. 127.0.0.1:8081 (port 0 picks a free one)", addr, port)
	}
	return net.JoinHostPort(host, port), nil
}

// Server is a started HTTP listener.
type Server struct {
	Addr string // the bound address, host:port (the port is real when 0 was asked)
	srv  *http.Server
	done chan error
}

// Serve listens on addr (see ListenAddr) and serves h until Close.
func Serve(addr string, h http.Handler) (*Server, error) {
	a, err := ListenAddr(addr)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", a)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w (is another engine using the port? pick another with --http)", a, err)
	}
	s := &Server{
		Addr: ln.Addr().String(),
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       60 * time.Second,
			MaxHeaderBytes:    64 << 10,
		},
		done: make(chan error, 1),
	}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

// Close stops the server, waiting at most 5 s for requests in flight.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if serr := <-s.done; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}
