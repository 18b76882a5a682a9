// Command weirbench runs weir's benchmark against Apache Flink on a real
// Kafka broker and writes the report to bench/results (package bench).
//
//	weirbench            the full run (make bench)
//	weirbench -quick     a small input, one run per figure (make bench-quick)
//
// Flags adjust the run; weirbench -help lists them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/weirstream/weir/bench"
	"github.com/weirstream/weir/integration/broker"
)

func main() {
	if handled, err := bench.ChildMain(os.Args[1:]); handled {
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "weirbench:", err)
		os.Exit(1)
	}
}

func run() error {
	quick := flag.Bool("quick", false, "small input, keys 10^3 only, one run per figure")
	events := flag.Int("events", 0, "events per input topic (default 10^7, or 2*10^5 with -quick)")
	keys := flag.String("keys", "", "comma-separated key counts of Q1 (default 1000,100000,1000000, or 1000 with -quick)")
	runs := flag.Int("runs", 0, "timed runs per workload and system (default 3, or 1 with -quick)")
	par := flag.Int("parallelism", 0, "parallelism of both systems (default 2)")
	noFlink := flag.Bool("no-flink", false, "measure weir and the ceiling only")
	noQ0 := flag.Bool("no-q0", false, "skip Q0 passthrough")
	only := flag.String("only", "", "comma-separated workloads to run, of "+strings.Join(bench.WorkloadFamilies, ",")+" (default all)")
	noLive := flag.Bool("no-live", false, "skip the latency and recovery runs")
	noRecovery := flag.Bool("no-recovery", false, "skip the recovery after SIGKILL in the live runs")
	liveMeasure := flag.Duration("live-measure", 0, "measured interval of each live run (default 30s, or 20s with -quick)")
	liveRate := flag.Int("live-rate", 0, "input rate of the live runs, events/s (default 20000)")
	out := flag.String("out", "", "report directory (default bench/results)")
	jvm := flag.String("flink-jvm", "", "space-separated JVM options of the Flink child (default \"-Xms1g -Xmx2g\")")
	prof := flag.String("cpuprofile", "", "directory for a CPU profile of every timed weir run")
	render := flag.String("render", "", "only re-render the .md and .png of this report .json (to -out, default its directory)")
	work := flag.String("work", "", "directory for broker data, checkpoints and logs (default: a temporary one, removed after)")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}

	if *render != "" {
		rep, err := bench.LoadReport(*render)
		if err != nil {
			return err
		}
		dir := *out
		if dir == "" {
			dir = filepath.Dir(*render)
		}
		if err := rep.Write(dir); err != nil {
			return err
		}
		fmt.Println("report:", rep.MarkdownPath)
		return nil
	}
	cfg := bench.DefaultConfig()
	if *quick {
		cfg = bench.QuickConfig()
	}
	if *events > 0 {
		cfg.Events = *events
	}
	if *keys != "" {
		cfg.Keys = nil
		for _, s := range strings.Split(*keys, ",") {
			k, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || k < 1 {
				return fmt.Errorf("-keys: %q is not a positive whole number", s)
			}
			cfg.Keys = append(cfg.Keys, k)
		}
	}
	if *runs > 0 {
		cfg.Runs = *runs
	}
	if *par > 0 {
		cfg.Parallelism = *par
	}
	if *jvm != "" {
		cfg.FlinkJVMOpts = strings.Fields(*jvm)
	}
	if *only != "" {
		for _, s := range strings.Split(*only, ",") {
			cfg.Only = append(cfg.Only, strings.TrimSpace(s))
		}
	}
	cfg.Flink = !*noFlink
	cfg.Q0 = !*noQ0
	cfg.Live = !*noLive
	cfg.Recovery = !*noRecovery
	if *liveMeasure > 0 {
		cfg.LiveMeasure = *liveMeasure
	}
	if *liveRate > 0 {
		cfg.LiveRate = *liveRate
	}
	cfg.OutDir, cfg.WorkDir, cfg.CPUProfileDir = *out, *work, *prof
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("own executable: %w", err)
	}
	cfg.Self = self
	root, err := broker.RepoRoot()
	if err != nil {
		return err
	}
	cfg.RepoRoot = root
	cfg.Log = os.Stderr

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := bench.Run(ctx, cfg)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return errors.New("interrupted")
		}
		return err
	}
	md, err := os.ReadFile(rep.MarkdownPath)
	if err != nil {
		return err
	}
	fmt.Printf("%s\n(report: %s)\n", md, rep.MarkdownPath)
	return nil
}
