package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
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
