package snapshot

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// A frame is a small self-checking file: one header line
//
//	weir <kind> v1 len=<body bytes> crc32c=<8 hex digits>\n
//
// followed by the body. A truncated, extended or bit-flipped file fails to
// decode with an error that says which.
const (
	frameMetadata = "metadata"
	frameOpState  = "opstate"
	frameVersion  = "v1"
	// frameHeaderMax bounds the header line.
	frameHeaderMax = 128
)

func encodeFrame(kind string, body []byte) []byte {
	hdr := fmt.Sprintf("weir %s %s len=%d crc32c=%08x\n", kind, frameVersion, len(body),
		crc32.Checksum(body, castagnoli))
	out := make([]byte, 0, len(hdr)+len(body))
	out = append(out, hdr...)
	return append(out, body...)
}

// decodeFrame checks data and returns its body.
func decodeFrame(kind string, data []byte) ([]byte, error) {
	nl := -1
	for i := 0; i < len(data) && i < frameHeaderMax; i++ {
		if data[i] == '\n' {
			nl = i
			break
		}
	}
	if nl < 0 {
		return nil, fmt.Errorf("no %s header (file of %d bytes is empty, truncated or not a weir %s file)",
			kind, len(data), kind)
	}
	f := strings.Fields(string(data[:nl]))
	if len(f) != 5 || f[0] != "weir" || f[1] != kind || !strings.HasPrefix(f[3], "len=") ||
		!strings.HasPrefix(f[4], "crc32c=") {
		return nil, fmt.Errorf("bad %s header %q (corrupt)", kind, data[:nl])
	}
	if f[2] != frameVersion {
		return nil, fmt.Errorf("%s format %s is not supported (this build reads %s)", kind, f[2], frameVersion)
	}
	n, err := strconv.ParseInt(f[3][len("len="):], 10, 64)
	if err != nil || n < 0 {
		return nil, fmt.Errorf("bad %s header %q (corrupt)", kind, data[:nl])
	}
	sum, err := strconv.ParseUint(f[4][len("crc32c="):], 16, 32)
	if err != nil {
		return nil, fmt.Errorf("bad %s header %q (corrupt)", kind, data[:nl])
	}
	body := data[nl+1:]
	if int64(len(body)) != n {
		return nil, fmt.Errorf("%s body is %d bytes, header says %d (truncated or torn)", kind, len(body), n)
	}
	if got := crc32.Checksum(body, castagnoli); got != uint32(sum) {
		return nil, fmt.Errorf("%s checksum mismatch: crc32c %08x, header says %08x (corrupt)", kind, got, sum)
	}
	return body, nil
}

// errFileTooLarge is returned by readFileLimited.
var errFileTooLarge = errors.New("file too large")

// readFileLimited reads the whole file at path, refusing files larger than
// limit bytes.
func readFileLimited(fs vfs.FS, path string, limit int64) ([]byte, error) {
	if _, err := statRegular(fs, path); err != nil {
		return nil, err
	}
	f, err := fs.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() > limit {
		return nil, fmt.Errorf("%s is %d bytes, more than %d: %w", path, st.Size(), limit, errFileTooLarge)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is more than %d bytes: %w", path, limit, errFileTooLarge)
	}
	return data, nil
}

// NotRegularError is the error for a checkpoint file that is not a regular
// file (a named pipe, a device, a socket, a directory): it is refused before
// it is opened, since opening a named pipe blocks until a writer comes and a
// device may never end.
type NotRegularError struct {
	Path string
	Mode os.FileMode
}

func (e *NotRegularError) Error() string {
	return fmt.Sprintf("%s is not a regular file (it is a %s); checkpoint files must be regular files: remove it or restore the file it replaced",
		e.Path, fileKind(e.Mode))
}

// fileKind names the type of a file mode.
func fileKind(m os.FileMode) string {
	switch {
	case m&os.ModeNamedPipe != 0:
		return "named pipe"
	case m&os.ModeSocket != 0:
		return "socket"
	case m&os.ModeCharDevice != 0:
		return "character device"
	case m&os.ModeDevice != 0:
		return "device"
	case m.IsDir():
		return "directory"
	case m&os.ModeSymlink != 0:
		return "symbolic link"
	}
	return "irregular file"
}

// statRegular stats path (following symbolic links) and refuses anything
// but a regular file with a *NotRegularError.
func statRegular(fs vfs.FS, path string) (vfs.FileInfo, error) {
	st, err := fs.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, &NotRegularError{Path: path, Mode: st.Mode()}
	}
	return st, nil
}

// isNotExist reports whether err says a file does not exist.
func isNotExist(err error) bool { return errors.Is(err, os.ErrNotExist) }

// crc32c returns the Castagnoli CRC of data.
func crc32c(data []byte) uint32 { return crc32.Checksum(data, castagnoli) }
