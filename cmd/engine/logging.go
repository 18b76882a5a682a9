package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/weirstream/weir/internal/kafkaconf"
)

// logFlags are the --log-level and --log-format flags of a command.
type logFlags struct {
	level, format *string
}

// addLogFlags defines --log-level (default defLevel) and --log-format on fs.
func addLogFlags(fs *flag.FlagSet, defLevel, levelUsage string) logFlags {
	return logFlags{
		level:  fs.String("log-level", defLevel, levelUsage),
		format: fs.String("log-format", "text", "log format on stderr: text (key=value lines) or json (one JSON object a line,\nwith time, level and msg)"),
	}
}

// logger returns the logger the flags ask for, writing to w, or a one-line
// error naming the bad flag value.
func (f logFlags) logger(w io.Writer) (*slog.Logger, slog.Level, error) {
	lvl, err := logLevel(*f.level)
	if err != nil {
		return nil, 0, err
	}
	h, err := logHandler(w, *f.format, lvl)
	if err != nil {
		return nil, 0, err
	}
	return slog.New(h), lvl, nil
}

// logHandler returns the slog handler of a --log-format value.
func logHandler(w io.Writer, format string, lvl slog.Level) (slog.Handler, error) {
	opts := &slog.HandlerOptions{Level: lvl}
	switch strings.ToLower(format) {
	case "text":
		return slog.NewTextHandler(w, opts), nil
	case "json":
		return slog.NewJSONHandler(w, opts), nil
	}
	return nil, fmt.Errorf("--log-format %s: use text or json", quoteArg(format))
}

// routeClientLogs sends the Kafka clients' own log (librdkafka's, with
// secret values redacted) to log, in its format and at its level: syslog
// levels 0-3 are errors, 4 warnings, 5-6 info, 7 debug.
func routeClientLogs(log *slog.Logger) {
	kafkaconf.SetClientLogHandler(func(ev kafka.LogEvent) {
		lvl := slog.LevelDebug
		switch {
		case ev.Level <= 3:
			lvl = slog.LevelError
		case ev.Level == 4:
			lvl = slog.LevelWarn
		case ev.Level <= 6:
			lvl = slog.LevelInfo
		}
		log.Log(context.Background(), lvl, "kafka client", "client", ev.Name, "tag", ev.Tag, "log", ev.Message)
	})
}
