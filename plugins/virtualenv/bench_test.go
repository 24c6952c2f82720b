package virtualenv

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/zeebo/blake3"

	"github.com/pypj/ptest-snap/internal/venvfull"
	"github.com/pypj/ptest-snap/pluginapi"
)

// The benchmarks run on the shared dataset venv-full ($PTEST_SNAP_VENV_FULL,
// default /work/data/venv-full: python3 -m venv plus the base
// interpreter's site-packages, ~460 MB, ~46,500 entries) and skip when it
// is absent. Each engine figure has its shell baseline beside it, to be run
// in the same `go test -bench` invocation and compared as a ratio:
//
//	go test -run '^$' -bench . -benchtime 3x ./plugins/virtualenv/
func venvFull(b *testing.B) string { return venvfull.Dir(b) }

// hashingWriter is a CaptureWriter that hashes every body with BLAKE3, as
// the host does before chunking, and keeps nothing.
type hashingWriter struct {
	h     *blake3.Hasher
	bytes int64
	n     int
}

func (w *hashingWriter) WriteMetadata(context.Context, pluginapi.Metadata) error { return nil }
func (w *hashingWriter) BeginStream(context.Context, string) error               { return nil }
func (w *hashingWriter) WriteEntry(_ context.Context, e *pluginapi.Entry, body io.Reader) error {
	w.n++
	if body != nil {
		n, err := io.Copy(w.h, body)
		w.bytes += n
		return err
	}
	return nil
}

func sh(b *testing.B, script string, args ...string) {
	b.Helper()
	out, err := exec.Command("sh", append([]string{"-c", script, "sh"}, args...)...).CombinedOutput()
	if err != nil {
		b.Fatalf("%s: %v: %s", script, err, out)
	}
}

// BenchmarkCapture: the engine's capture of venv-full into a hashing
// writer, beside `tar -cf - | zstd -1 -T0` of the same tree.
func BenchmarkCapture(b *testing.B) {
	src := venvFull(b)
	b.Run("engine-blake3", func(b *testing.B) {
		for b.Loop() {
			w := &hashingWriter{h: blake3.New()}
			if err := New().Capture(b.Context(), &pluginapi.CaptureRequest{Target: src}, w); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(w.bytes)
			b.ReportMetric(float64(w.n), "entries")
		}
	})
	b.Run("tar-zstd", func(b *testing.B) {
		for b.Loop() {
			sh(b, `tar -cf - -C "$1" . | zstd -q -1 -T0 > /dev/null`, src)
		}
	})
}

// BenchmarkRestoreNewPath: restore venv-full to a new path (relocation
// included) from a capture held in memory, beside `cp -a`.
func BenchmarkRestoreNewPath(b *testing.B) {
	src := venvFull(b)
	snap := &memCapture{}
	if err := New().Capture(context.Background(), &pluginapi.CaptureRequest{Target: src}, snap); err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	b.Run("engine", func(b *testing.B) {
		for b.Loop() {
			target := filepath.Join(dir, "restored venv")
			res, err := New().Restore(b.Context(), &pluginapi.RestoreRequest{
				Target: target, Metadata: snap.md, Streams: snap.streams,
			}, &replay{c: snap})
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			os.RemoveAll(res.Target)
			b.StartTimer()
		}
	})
	b.Run("cp-a", func(b *testing.B) {
		for b.Loop() {
			target := filepath.Join(dir, "copied")
			sh(b, `cp -a "$1" "$2"`, src, target)
			b.StopTimer()
			os.RemoveAll(target)
			b.StartTimer()
		}
	})
}

// BenchmarkRestoreInPlace: after change "small" (idna uninstalled, a
// 40-module package installed, ten files edited), reset a copy of venv-full in place —
// the host's planning (an index-only capture of the target compared with
// the snapshot) included — beside `rm -rf` + `cp -a` of the whole venv.
func BenchmarkRestoreInPlace(b *testing.B) {
	src := venvFull(b)
	dir := b.TempDir()
	work := filepath.Join(dir, "work")
	sh(b, `cp -a "$1" "$2"`, src, work)
	snap := &memCapture{}
	if err := New().Capture(context.Background(), &pluginapi.CaptureRequest{Target: work}, snap); err != nil {
		b.Fatal(err)
	}
	site := filepath.Join(work, scanDistributions(work).SitePackages[0])
	changeSmall := func(b *testing.B) {
		b.Helper()
		sh(b, `set -e; cd "$1"
			rm -rf idna idna-*.dist-info
			mkdir -p newpkg newpkg-1.0.dist-info
			for i in $(seq 1 40); do echo "x = $i" > newpkg/m$i.py; done
			printf 'Name: newpkg\nVersion: 1.0\n\n' > newpkg-1.0.dist-info/METADATA
			for f in $(ls -d */__init__.py | head -10); do echo "# edited" >> "$f"; done`, site)
	}
	b.Run("engine", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			changeSmall(b)
			b.StartTimer()
			have := map[string]pluginapi.Entry{}
			idx := &memCapture{}
			if err := New().Capture(b.Context(), &pluginapi.CaptureRequest{Target: work, IndexOnly: true}, idx); err != nil {
				b.Fatal(err)
			}
			for _, me := range idx.entries {
				have[me.e.Path] = me.e
			}
			rp := &replay{c: snap, unchanged: map[string]bool{}}
			for _, me := range snap.entries {
				if h, ok := have[me.e.Path]; ok && sameEntry(h, me.e) {
					rp.unchanged[me.e.Path] = true
				}
			}
			if _, err := New().Restore(b.Context(), &pluginapi.RestoreRequest{
				Target: work, InPlace: true, Metadata: snap.md, Streams: snap.streams,
			}, rp); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(len(snap.entries)-len(rp.unchanged)), "rewritten")
		}
	})
	b.Run("rm-cp-a", func(b *testing.B) {
		copyDir := filepath.Join(dir, "copy")
		for b.Loop() {
			b.StopTimer()
			sh(b, `rm -rf "$2"; cp -a "$1" "$2"`, src, copyDir)
			b.StartTimer()
			sh(b, `rm -rf "$2" && cp -a "$1" "$2"`, src, copyDir)
		}
	})
}

// BenchmarkRecreate: what rebuilding costs without ptest-snap. Offline only
// `python3 -m venv` (with its bundled pip and setuptools) can be redone;
// venv-full's other ~150 distributions have no wheels on this machine.
func BenchmarkRecreate(b *testing.B) {
	venvFull(b)
	if _, err := exec.LookPath("python3"); err != nil {
		b.Skip("no python3")
	}
	dir := b.TempDir()
	for b.Loop() {
		target := filepath.Join(dir, "fresh")
		sh(b, `python3 -m venv "$1"`, target)
		b.StopTimer()
		os.RemoveAll(target)
		b.StartTimer()
	}
}

// BenchmarkMetadata: what a capture spends on metadata before the walk
// (pyvenv.cfg, the base interpreter's identity, every *.dist-info/METADATA).
func BenchmarkMetadata(b *testing.B) {
	src := venvFull(b)
	for b.Loop() {
		m, err := collectMetadata(src, &pluginapi.CaptureRequest{Target: src})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(len(m.InstalledPackages)), "packages")
	}
}
