package snapshot

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// rewriteFile replaces the file at path (a new file, so hard links to the
// old one are unaffected) with f(old content).
func rewriteFile(t *testing.T, fs vfs.FS, path string, f func([]byte) []byte) {
	t.Helper()
	r, err := fs.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	_ = r.Close()
	if err := fs.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := writeFileSync(fs, path, f(data)); err != nil {
		t.Fatal(err)
	}
}

func flipBit(at func(n int) int) func([]byte) []byte {
	return func(b []byte) []byte {
		b = append([]byte(nil), b...)
		if len(b) > 0 {
			b[at(len(b))] ^= 0x10
		}
		return b
	}
}

func truncate(b []byte) []byte { return b[:len(b)/2] }

// corruptEnv builds checkpoints 1 and 2 of two tasks on a MemFS.
func corruptEnv(t *testing.T) (*env, Metadata, Metadata) {
	e := newEnv(t, vfs.NewMem(), "window-1", "window-2")
	e.fill(200, "A")
	m1 := e.checkpoint(1, false)
	e.fill(100, "B")
	m2 := e.checkpoint(2, false)
	return e, m1, m2
}

// expectFallback checks that Latest skips checkpoint 2 with a problem that
// contains want, picks checkpoint 1, and that checkpoint 1 restores.
func expectFallback(t *testing.T, e *env, m1 Metadata, want string) {
	t.Helper()
	_, problems := e.latest(1)
	if len(problems) != 1 || problems[0].ID != 2 || !strings.Contains(problems[0].Err.Error(), want) {
		t.Fatalf("problems %v, want one for checkpoint 2 containing %q", problems, want)
	}
	t.Logf("%v", problems[0])
	e.checkRestore(m1)
	infos, err := List(e.fs, e.root)
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 2 || !infos[0].Complete || infos[1].Complete {
		t.Fatalf("List: %+v, want 1 complete and 2 not", infos)
	}
}

func TestCorruption(t *testing.T) {
	taskFile := func(m Metadata, task, name string) string {
		return filePath(vfs.NewMem(), TaskDir(vfs.NewMem(), "/ckpt", m.ID, task), name)
	}
	newSST := func(t *testing.T, m1, m2 Metadata) string {
		old := map[string]bool{}
		for _, f := range m1.Tasks["window-2"].Files {
			old[f.Name] = true
		}
		for _, f := range m2.Tasks["window-2"].Files {
			if strings.HasSuffix(f.Name, ".sst") && !old[f.Name] {
				return f.Name
			}
		}
		t.Fatal("checkpoint 2 has no new sstable")
		return ""
	}
	meta := "/ckpt/chk-2/_metadata"
	cases := []struct {
		name    string
		corrupt func(t *testing.T, e *env, m1, m2 Metadata)
		want    string
	}{
		{"bit flip in a new sstable", func(t *testing.T, e *env, m1, m2 Metadata) {
			rewriteFile(t, e.fs, taskFile(m2, "window-2", newSST(t, m1, m2)), flipBit(func(n int) int { return n / 3 }))
		}, "(corrupt)"},
		{"truncated sstable", func(t *testing.T, e *env, m1, m2 Metadata) {
			rewriteFile(t, e.fs, taskFile(m2, "window-2", newSST(t, m1, m2)), truncate)
		}, "(truncated or overwritten)"},
		{"bit flip in the MANIFEST", func(t *testing.T, e *env, m1, m2 Metadata) {
			rewriteFile(t, e.fs, taskFile(m2, "window-1", "db/MANIFEST-000001"), flipBit(func(n int) int { return n - 1 }))
		}, "file db/MANIFEST-000001: crc32c"},
		{"bit flip in the operator state", func(t *testing.T, e *env, m1, m2 Metadata) {
			rewriteFile(t, e.fs, taskFile(m2, "window-1", opStateName), flipBit(func(n int) int { return n - 2 }))
		}, "file opstate: crc32c"},
		{"bit flip in _metadata", func(t *testing.T, e *env, m1, m2 Metadata) {
			rewriteFile(t, e.fs, meta, flipBit(func(n int) int { return n - 10 }))
		}, "metadata checksum mismatch"},
		{"truncated _metadata", func(t *testing.T, e *env, m1, m2 Metadata) {
			rewriteFile(t, e.fs, meta, truncate)
		}, "(truncated or torn)"},
		{"empty _metadata", func(t *testing.T, e *env, m1, m2 Metadata) {
			rewriteFile(t, e.fs, meta, func([]byte) []byte { return nil })
		}, "no metadata header"},
		{"missing _metadata", func(t *testing.T, e *env, m1, m2 Metadata) {
			if err := e.fs.Remove(meta); err != nil {
				t.Fatal(err)
			}
		}, "no _metadata: incomplete"},
		{"missing sstable", func(t *testing.T, e *env, m1, m2 Metadata) {
			if err := e.fs.Remove(taskFile(m2, "window-2", newSST(t, m1, m2))); err != nil {
				t.Fatal(err)
			}
		}, "is missing"},
		{"missing task directory", func(t *testing.T, e *env, m1, m2 Metadata) {
			if err := e.fs.RemoveAll(TaskDir(e.fs, e.root, 2, "window-1")); err != nil {
				t.Fatal(err)
			}
		}, "task window-1: file db/"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, m1, m2 := corruptEnv(t)
			defer e.close()
			e.latest(2)
			c.corrupt(t, e, m1, m2)
			expectFallback(t, e, m1, c.want)
		})
	}
}

// TestCorruptionEveryFile flips one bit in each file of checkpoint 2 in turn:
// every one is detected.
func TestCorruptionEveryFile(t *testing.T) {
	e, m1, m2 := corruptEnv(t)
	defer e.close()
	for _, task := range e.tasks {
		for _, f := range m2.Tasks[task].Files {
			if f.Size == 0 {
				continue // pebble's marker files are empty: presence is all there is
			}
			path := filePath(e.fs, TaskDir(e.fs, e.root, 2, task), f.Name)
			var orig []byte
			rewriteFile(t, e.fs, path, func(b []byte) []byte {
				orig = append([]byte(nil), b...)
				return flipBit(func(n int) int { return n / 2 })(b)
			})
			_, problems := e.latest(1)
			if len(problems) != 1 || !strings.Contains(problems[0].Err.Error(), "file "+f.Name+": crc32c") {
				t.Fatalf("%s/%s: problems %v", task, f.Name, problems)
			}
			rewriteFile(t, e.fs, path, func([]byte) []byte { return orig })
			e.latest(2)
		}
	}
	e.checkRestore(m1)
	e.checkRestore(m2)
}

func TestFrame(t *testing.T) {
	good := encodeFrame(frameOpState, []byte("hello, state"))
	if body, err := decodeFrame(frameOpState, good); err != nil || string(body) != "hello, state" {
		t.Fatalf("decode: %q, %v", body, err)
	}
	cases := map[string]struct {
		data []byte
		want string
	}{
		"truncated":  {good[:len(good)-1], "truncated or torn"},
		"extended":   {append(append([]byte(nil), good...), 0), "truncated or torn"},
		"bit flip":   {flipBit(func(n int) int { return n - 1 })(good), "checksum mismatch"},
		"other kind": {encodeFrame(frameMetadata, []byte("x")), "bad opstate header"},
		"no header":  {[]byte("garbage"), "no opstate header"},
		"future":     {[]byte(strings.Replace(string(good), " v1 ", " v9 ", 1)), "format v9 is not supported"},
	}
	for name, c := range cases {
		if _, err := decodeFrame(frameOpState, c.data); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", name, err, c.want)
		}
	}
}

func TestLatestEmptyRoot(t *testing.T) {
	fs := vfs.NewMem()
	_, problems, err := Latest(context.Background(), fs, "/nowhere", "job", "fp")
	if !errors.Is(err, ErrNoCheckpoint) || len(problems) != 0 {
		t.Fatalf("Latest on a missing root: %v, %v", problems, err)
	}
	infos, err := List(fs, "/nowhere")
	if err != nil || len(infos) != 0 {
		t.Fatalf("List on a missing root: %v, %v", infos, err)
	}
}
