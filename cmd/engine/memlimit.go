package main

import (
	"log/slog"
	"runtime/debug"

	"github.com/weirstream/weir"
)

// memoryLimitEnv is the Go runtime's variable for the soft memory limit,
// which the runtime applies itself when the process starts.
const memoryLimitEnv = "GOMEMLIMIT"

// memoryLimit is the soft memory limit engine run uses, and where it came
// from.
type memoryLimit struct {
	limit int64  // bytes, weir.NoMemoryLimit for none; 0: no limit found
	from  string // "--memory-limit", "GOMEMLIMIT=...", "memory.limit", "default: ..."
	// ignored names the settings that were given but lost to from.
	ignored []string
	// byRuntime: the limit is GOMEMLIMIT's, which the runtime set.
	byRuntime bool
}

// setMemoryLimit chooses the process's soft memory limit and sets it
// (runtime/debug.SetMemoryLimit), taking the first of:
//
//  1. --memory-limit (flagLimit; 0 when the flag is not given);
//  2. GOMEMLIMIT, when getenv gives it: the Go runtime applied it when
//     the process started, so it is left as it is;
//  3. the job file's memory.limit (spec.Memory.Limit);
//  4. the default, def (weir.DefaultMemoryLimit): none where it finds
//     nothing.
//
// It logs the limit in use and where it came from, and warns about a
// setting that lost.
func setMemoryLimit(flagLimit int64, spec weir.JobSpec, getenv func(string) string,
	def func() (int64, string, bool), log *slog.Logger) memoryLimit {
	env := getenv(memoryLimitEnv)
	var m memoryLimit
	switch {
	case flagLimit != 0:
		m = memoryLimit{limit: flagLimit, from: "--memory-limit"}
		if env != "" {
			m.ignored = append(m.ignored, memoryLimitEnv+"="+env)
		}
		if spec.Memory.Limit != 0 {
			m.ignored = append(m.ignored, "memory.limit")
		}
	case env != "":
		m = memoryLimit{limit: debug.SetMemoryLimit(-1), from: memoryLimitEnv + "=" + env, byRuntime: true}
		if spec.Memory.Limit != 0 {
			m.ignored = append(m.ignored, "memory.limit")
		}
	case spec.Memory.Limit != 0:
		m = memoryLimit{limit: spec.Memory.Limit, from: "memory.limit"}
	default:
		limit, from, ok := def()
		if !ok {
			log.Warn("no soft memory limit: the memory available to the process is unknown; set memory.limit or --memory-limit",
				"limit", weir.FormatMemoryLimit(debug.SetMemoryLimit(-1)))
			return memoryLimit{}
		}
		m = memoryLimit{limit: limit, from: "default: " + from}
	}
	if !m.byRuntime {
		debug.SetMemoryLimit(m.limit)
	}
	for _, ig := range m.ignored {
		log.Warn("soft memory limit: "+ig+" is not used; "+m.from+" takes precedence (--memory-limit, then GOMEMLIMIT, then memory.limit)",
			"limit", weir.FormatMemoryLimit(m.limit))
	}
	log.Info("soft memory limit", "limit", weir.FormatMemoryLimit(m.limit), "from", m.from)
	return m
}
