package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// flinkPeer is the built Flink peer in bench/flink.
type flinkPeer struct {
	dir       string // bench/flink
	classpath string // target/classes plus the dependency jars
	version   string // Flink's version from the pom
}

// buildFlink compiles the Flink peer with Maven (dependencies to ~/.m2,
// output to bench/flink/target) unless the build is newer than every
// source, and returns its class path.
func buildFlink(ctx context.Context, repoRoot string, logPath string) (*flinkPeer, error) {
	dir := filepath.Join(repoRoot, "bench", "flink")
	pom := filepath.Join(dir, "pom.xml")
	pomText, err := os.ReadFile(pom)
	if err != nil {
		return nil, fmt.Errorf("bench: flink peer: %w", err)
	}
	version := "?"
	if m := regexp.MustCompile(`<flink.version>([^<]+)</flink.version>`).FindSubmatch(pomText); m != nil {
		version = string(m[1])
	}
	cpFile := filepath.Join(dir, "target", "classpath.txt")
	if !upToDate(cpFile, dir) {
		cmd := exec.CommandContext(ctx, "mvn", "-q", "-B", "-f", pom, "-DskipTests",
			"package", "dependency:build-classpath", "-Dmdep.outputFile="+cpFile)
		if _, _, err := runChild(ctx, cmd, logPath, 15*time.Minute); err != nil {
			return nil, fmt.Errorf("bench: build the flink peer (mvn): %w", err)
		}
	}
	cp, err := os.ReadFile(cpFile)
	if err != nil {
		return nil, fmt.Errorf("bench: flink peer class path: %w", err)
	}
	return &flinkPeer{
		dir:       dir,
		classpath: filepath.Join(dir, "target", "classes") + string(os.PathListSeparator) + strings.TrimSpace(string(cp)),
		version:   version,
	}, nil
}

// upToDate says whether file exists and is newer than the pom and every
// file under dir/src.
func upToDate(file, dir string) bool {
	st, err := os.Stat(file)
	if err != nil {
		return false
	}
	newest := time.Time{}
	check := func(p string) {
		if s, err := os.Stat(p); err == nil && s.ModTime().After(newest) {
			newest = s.ModTime()
		}
	}
	check(filepath.Join(dir, "pom.xml"))
	_ = filepath.WalkDir(filepath.Join(dir, "src"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			check(p)
		}
		return nil
	})
	return st.ModTime().After(newest)
}

// flinkArgs are the arguments of one Flink run.
type flinkArgs struct {
	Brokers, Topic, Out, Group, Mode, Delivery, TxnPrefix, CheckpointDir string
	Parallelism                                                          int
	CheckpointMs, WindowMs, OOOMs                                        int64
	// SlideMs (sliding), GapMs (session), LowerMs and UpperMs (interval
	// join) configure the modes that use them.
	SlideMs, GapMs, LowerMs, UpperMs int64
	// Unbounded makes the source read on until the process is killed;
	// Restore is a retained checkpoint (chk-N directory) to start from.
	Unbounded bool
	Restore   string
}

// command returns the java command line of one run.
func (f *flinkPeer) command(ctx context.Context, jvmOpts []string, a flinkArgs) *exec.Cmd {
	args := append([]string{}, jvmOpts...)
	args = append(args,
		// Flink's own JVM options for Java 17 (flink-conf env.java.opts.all).
		"--add-exports=java.base/sun.net.util=ALL-UNNAMED",
		"--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED",
		"--add-opens=java.base/java.lang=ALL-UNNAMED",
		"--add-opens=java.base/java.net=ALL-UNNAMED",
		"--add-opens=java.base/java.io=ALL-UNNAMED",
		"--add-opens=java.base/java.nio=ALL-UNNAMED",
		"--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
		"--add-opens=java.base/java.lang.reflect=ALL-UNNAMED",
		"--add-opens=java.base/java.text=ALL-UNNAMED",
		"--add-opens=java.base/java.time=ALL-UNNAMED",
		"--add-opens=java.base/java.util=ALL-UNNAMED",
		"--add-opens=java.base/java.util.concurrent=ALL-UNNAMED",
		"--add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED",
		"--add-opens=java.base/java.util.concurrent.locks=ALL-UNNAMED",
		"-cp", f.classpath, "dev.weir.bench.FlinkBench",
		"brokers="+a.Brokers, "topic="+a.Topic, "out="+a.Out, "group="+a.Group,
		"mode="+a.Mode, "delivery="+a.Delivery, "txn-prefix="+a.TxnPrefix,
		fmt.Sprintf("parallelism=%d", a.Parallelism),
		fmt.Sprintf("checkpoint-ms=%d", a.CheckpointMs), "checkpoint-dir="+a.CheckpointDir,
		fmt.Sprintf("window-ms=%d", a.WindowMs),
		fmt.Sprintf("ooo-ms=%d", a.OOOMs),
		fmt.Sprintf("slide-ms=%d", a.SlideMs),
		fmt.Sprintf("gap-ms=%d", a.GapMs),
		fmt.Sprintf("lower-ms=%d", a.LowerMs),
		fmt.Sprintf("upper-ms=%d", a.UpperMs),
		fmt.Sprintf("unbounded=%t", a.Unbounded),
	)
	if a.Restore != "" {
		args = append(args, "restore="+a.Restore)
	}
	return exec.CommandContext(ctx, "java", args...)
}
