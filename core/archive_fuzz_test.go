package core

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/pypj/ptest-snap/store"
)

// readArchiveFrames reads a whole archive the way Import does, without a
// store: framing, limits, checksum, and decoding of records and trees.
func readArchiveFrames(b []byte) error {
	ar, err := openArchive(bytes.NewReader(b))
	if err != nil {
		return err
	}
	defer ar.close()
	for {
		kind, payload, err := ar.next()
		if err != nil {
			return err
		}
		switch kind {
		case frameEnd:
			return nil
		case frameRecord:
			if _, err := store.DecodeSnapshot(payload); err != nil {
				return err
			}
		case frameTree:
			if _, err := store.DecodeTree(payload[32:]); err != nil {
				return err
			}
		}
	}
}

// FuzzArchiveReader: no input may panic the reader, hang it, or make it
// allocate beyond its limits; every refusal is one of the archive errors.
// Seeds: the hostile set and testdata/fuzz/FuzzArchiveReader.
func FuzzArchiveReader(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "archives", "*.ptsa"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := readArchiveFrames(b)
		if err == nil {
			return
		}
		for _, known := range []error{ErrArchiveFormat, ErrArchiveVersion, ErrArchiveTruncated, ErrArchiveChecksum,
			ErrArchiveCorrupt, ErrArchiveTooLarge, store.ErrCorrupt, store.ErrNewerFormat} {
			if errors.Is(err, known) {
				return
			}
		}
		t.Fatalf("unclassified error: %v", err)
	})
}

// TestWriteFuzzSeeds keeps a valid multi-snapshot archive in the fuzz
// corpus (regenerated with -update), so the fuzzer starts from real frames.
func TestWriteFuzzSeeds(t *testing.T) {
	if !*updateTestdata {
		t.Skip("only with -update")
	}
	m := lcOpen(t)
	lcWrite(t, m, lcSnap{ID: "seed-a", Name: "a", Streams: map[string]map[string]string{
		"rootfs": {"d/f": "file", "d/l": "->f", "h": "=>d/f", "e/": ""}, "volume:v": {"x": "y"}}})
	lcWrite(t, m, lcSnap{ID: "seed-b", Streams: lcFiles("d/f", "file", "g", "gee")})
	b := lcExport(t, m, "seed-a", "seed-b")
	dir := filepath.Join("testdata", "fuzz", "FuzzArchiveReader")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	seed := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
	if err := os.WriteFile(filepath.Join(dir, "valid-two-snapshots"), []byte(seed), 0o644); err != nil {
		t.Fatal(err)
	}
}

// FuzzImport runs whole imports into a real store: no input may panic
// Import, and a refused import must leave the visible snapshots as they
// were. Seeds as FuzzArchiveReader's.
func FuzzImport(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "archives", "*.ptsa"))
	seeds, _ := filepath.Glob(filepath.Join("testdata", "formats", "*", "archive.ptsa"))
	for _, p := range append(files, seeds...) {
		b, err := os.ReadFile(p)
		if err == nil {
			f.Add(b)
		}
	}
	m := lcOpen(f)
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, b []byte) {
		before, err := m.Store().Snapshots(ctx)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := m.Import(ctx, bytes.NewReader(b), ImportOptions{Rename: true})
		after, lerr := m.Store().Snapshots(ctx)
		if lerr != nil {
			t.Fatal(lerr)
		}
		if err != nil {
			if len(after) != len(before) {
				t.Fatalf("refused import (%v) changed the snapshots: %d → %d", err, len(before), len(after))
			}
			return
		}
		if len(after) != len(before)+len(rep.Snapshots) {
			t.Fatalf("import reported %d snapshots, store went %d → %d", len(rep.Snapshots), len(before), len(after))
		}
		// Keep the store small between runs.
		for _, s := range rep.Snapshots {
			if err := m.Store().DeleteSnapshot(ctx, s.ID); err != nil {
				t.Fatal(err)
			}
		}
	})
}
