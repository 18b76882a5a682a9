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

// isNotExist reports whether err says a file does not exist.
func isNotExist(err error) bool { return errors.Is(err, os.ErrNotExist) }

// crc32c returns the Castagnoli CRC of data.
func crc32c(data []byte) uint32 { return crc32.Checksum(data, castagnoli) }
