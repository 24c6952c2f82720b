package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestExitCodes checks the documented exit codes from the built binary, and
// that every error says what was wrong without leaking internals.
func TestExitCodes(t *testing.T) {
	requireEngine(t, "dir")
	c := newCLI(t)
	src := filepath.Join(t.TempDir(), "fixture")
	makeFixture(t, src)

	// usage: 2
	c.fails(exitUsage, "no-such-command")
	c.fails(exitUsage, "list", "--no-such-flag")
	c.fails(exitUsage, "create", src) // no --engine
	c.fails(exitUsage, "create", "--engine", "dir")
	c.fails(exitUsage, "show")
	c.fails(exitUsage, "diff", "a")
	c.fails(exitUsage, "create", "--engine", "dir", "--label", "novalue", src)
	c.fails(exitUsage, "cleanup", "--older-than", "soon")
	c.fails(exitUsage, "restore", "x", "--in-place", "--target", "/tmp/x")
	c.fails(exitUsage, "export", "x") // no -o

	// not found: 3
	r := c.fails(exitNotFound, "show", "nosuchsnapshot")
	assert.Contains(t, r.stderr, "nosuchsnapshot")
	c.fails(exitNotFound, "restore", "nosuchsnapshot", "--target", filepath.Join(t.TempDir(), "x"))
	c.fails(exitNotFound, "delete", "nosuchsnapshot")
	c.fails(exitNotFound, "import", filepath.Join(t.TempDir(), "missing.ptsnap"))
	r = c.fails(exitNotFound, "create", "--engine", "nosuchengine", src)
	assert.Contains(t, r.stderr, "nosuchengine")
	assert.Contains(t, r.stderr, "ptest-snap engines", "the hint says where to look")
	r = c.fails(exitNotFound, "create", "--engine", "dir", filepath.Join(t.TempDir(), "missing-dir"))
	assert.Contains(t, r.stderr, "missing-dir")

	// With --json a failure is also a JSON document on stdout.
	r = c.run("--json", "show", "nosuchsnapshot")
	require.Equal(t, exitNotFound, r.code)
	var ej errorJSON
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &ej), r.stdout)
	assert.Equal(t, exitNotFound, ej.Error.Code)
	assert.Contains(t, ej.Error.Message, "nosuchsnapshot")

	// ambiguous prefix: 2, listing the candidates.
	c.ok("create", "--engine", "dir", "--id", "abcdef-one", src)
	c.ok("create", "--engine", "dir", "--id", "abcdef-two", src)
	r = c.fails(exitUsage, "show", "abcdef")
	assert.Contains(t, r.stderr, "abcdef-one")
	assert.Contains(t, r.stderr, "abcdef-two")
	c.ok("show", "abcdef-o")

	// quota: 6 — refused before anything is written, saying which limit.
	quota := newCLI(t)
	quota.ok("--max-snapshots-per-env", "1", "create", "--engine", "dir", src)
	r = quota.fails(exitQuota, "--max-snapshots-per-env", "1", "create", "--engine", "dir", "--name", "over", src)
	assert.Contains(t, r.stderr, "limit")
	quota.fails(exitNotFound, "show", "over")
	quota.env = append(quota.env, "PTEST_SNAP_MAX_STORE_SIZE=1B")
	quota.fails(exitQuota, "create", "--engine", "dir", src)
	quota.fails(exitUsage, "--max-store-size", "lots", "list")

	// corrupt: 4 — an archive with a flipped byte is refused, and the
	// store is left as it was.
	archive := filepath.Join(t.TempDir(), "a.ptsnap")
	c.ok("export", "abcdef-one", "-o", archive)
	b, err := os.ReadFile(archive)
	require.NoError(t, err)
	b[len(b)/2] ^= 0xff
	damaged := filepath.Join(t.TempDir(), "damaged.ptsnap")
	require.NoError(t, os.WriteFile(damaged, b, 0o644))
	other := newCLI(t)
	other.fails(exitCorrupt, "import", damaged)
	var l listJSON
	other.jsonOK(&l, "list")
	assert.Empty(t, l.Snapshots, "a refused import leaves the store as it was")
	// truncated: also corrupt
	require.NoError(t, os.WriteFile(damaged, b[:len(b)/3], 0o644))
	other.fails(exitCorrupt, "import", damaged)
}

// TestHelpForEveryCommand checks that every command has help with an
// example, and that help exits 0.
func TestHelpForEveryCommand(t *testing.T) {
	c := newCLI(t)
	r := c.ok("--help")
	for _, code := range []string{"0 ", "1 ", "2 ", "3 ", "4 ", "5 ", "6 ", "7 ", "130 "} {
		assert.Contains(t, r.stdout, "\n  "+code, "exit code %s documented", code)
	}
	for _, cmd := range []string{"create", "restore", "list", "show", "diff", "stats", "delete", "cleanup",
		"gc", "verify", "export", "import", "events", "engines", "version", "completion"} {
		r := c.ok(cmd, "--help")
		assert.Contains(t, r.stdout, "Examples:", cmd)
		assert.Contains(t, r.stdout, "ptest-snap "+cmd, cmd)
	}
	r = c.ok("help", "json")
	assert.Contains(t, r.stdout, `"snapshot_id"`)
	for _, sh := range []string{"bash", "zsh", "fish"} {
		r := c.ok("completion", sh)
		assert.Contains(t, r.stdout, "ptest-snap")
	}
	var v versionJSON
	c.jsonOK(&v, "version")
	assert.NotEmpty(t, v.Version)
	assert.Equal(t, 1, v.ProtocolVersion)
}

// TestEnginesListsBuiltInEngines checks discovery next to the binary, the
// plugin path, and duplicate reporting.
func TestEnginesListsBuiltInEngines(t *testing.T) {
	requireEngine(t, "dir")
	c := newCLI(t)
	var e enginesJSON
	c.jsonOK(&e, "engines")
	byName := map[string]engineJSON{}
	for _, x := range e.Engines {
		byName[x.Name] = x
	}
	dir, ok := byName["dir"]
	require.True(t, ok, "dir engine found next to ptest-snap: %+v", e)
	assert.Equal(t, filepath.Join(binDir, "ptest-snap-engine-dir"), dir.Path)
	assert.Equal(t, "exec-dir", dir.Source)
	assert.Len(t, dir.SHA256, 64)
	assert.NotEmpty(t, dir.Version)
	assert.Empty(t, dir.Error)
	assert.Contains(t, dir.Capabilities, "restore-in-place")

	// A second copy on PTEST_SNAP_PLUGIN_PATH comes first; the built-in one
	// is reported as shadowed.
	extra := t.TempDir()
	body, err := os.ReadFile(dir.Path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(extra, "ptest-snap-engine-dir"), body, 0o755))
	c.env = append(c.env, "PTEST_SNAP_PLUGIN_PATH="+extra)
	c.jsonOK(&e, "engines")
	var found []engineJSON
	for _, x := range e.Engines {
		if x.Name == "dir" {
			found = append(found, x)
		}
	}
	require.Len(t, found, 1, "one engine per name")
	assert.Equal(t, filepath.Join(extra, "ptest-snap-engine-dir"), found[0].Path)
	assert.Equal(t, "plugin-path", found[0].Source)
	require.Len(t, e.Warnings, 1)
	assert.Contains(t, e.Warnings[0], "shadowed")
	assert.Contains(t, e.Warnings[0], dir.Path)
	r := c.ok("engines")
	assert.Contains(t, r.stdout, "shadowed")

	// Pinning: the right checksum runs the engine, another is refused
	// before it runs.
	src := filepath.Join(t.TempDir(), "fixture")
	makeFixture(t, src)
	c.ok("--pin-engine", "dir="+dir.SHA256, "create", "--engine", "dir", src)
	wrong := strings.Repeat("0", 64)
	r = c.fails(exitEngine, "--pin-engine", "dir="+wrong, "create", "--engine", "dir", src)
	assert.Contains(t, r.stderr, "checksum")
	c.env = append(c.env, "PTEST_SNAP_ENGINE_PINS=dir="+wrong)
	c.fails(exitEngine, "create", "--engine", "dir", src)
	c.fails(exitUsage, "--pin-engine", "dir=xyz", "list")
	assert.True(t, strings.HasPrefix(e.SearchPath[0], extra))
}

// damageStore flips 64 bytes in the middle of the largest file of c's
// store, the one that holds the chunks.
func damageStore(t *testing.T, c *cli) {
	t.Helper()
	// The largest file of the store's database holds the chunks.
	var biggest string
	var size int64
	require.NoError(t, filepath.Walk(c.store, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() && info.Size() > size && !strings.HasSuffix(p, ".jsonl") {
			biggest, size = p, info.Size()
		}
		return err
	}))
	require.Greater(t, size, int64(1<<20), "the chunks are somewhere")
	f, err := os.OpenFile(biggest, os.O_RDWR, 0)
	require.NoError(t, err)
	buf := make([]byte, 64)
	_, err = f.ReadAt(buf, size/2)
	require.NoError(t, err)
	for i := range buf {
		buf[i] ^= 0xff
	}
	_, err = f.WriteAt(buf, size/2)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

// TestRestoreFromDamagedStoreLeavesNoTarget restores a snapshot whose
// chunks are damaged to a new path: the restore fails with the corrupt
// code, and the target is removed (a target that existed empty is left
// empty), not left half written.
func TestRestoreFromDamagedStoreLeavesNoTarget(t *testing.T) {
	requireEngine(t, "dir")
	c := newCLI(t)
	src := filepath.Join(t.TempDir(), "big")
	makeBigTree(t, src, 8, 256<<10)
	c.ok("create", "--engine", "dir", "--name", "big", src)
	damageStore(t, c)

	base := t.TempDir()
	dst := filepath.Join(base, "restored")
	r := c.fails(exitCorrupt, "restore", "big", "--target", dst)
	requireCleanStderr(t, r.stderr)
	assert.NoDirExists(t, dst, "a failed restore to a new path leaves no target")

	empty := filepath.Join(base, "empty")
	require.NoError(t, os.Mkdir(empty, 0o755))
	c.fails(exitCorrupt, "restore", "big", "--target", empty)
	names, err := os.ReadDir(empty)
	require.NoError(t, err)
	assert.Empty(t, names, "a target that existed empty is left empty")
}

// TestVerifyFindsDamagedStore flips bytes in the middle of the store's
// largest data file and checks that verify reports each damaged piece on
// its own line, with exit code 4, and that intact stores pass.
func TestVerifyFindsDamagedStore(t *testing.T) {
	requireEngine(t, "dir")
	c := newCLI(t)
	src := filepath.Join(t.TempDir(), "big")
	makeBigTree(t, src, 8, 256<<10)
	r := c.ok("create", "-q", "--engine", "dir", src)
	id := strings.TrimSpace(r.stdout)
	c.ok("verify")

	damageStore(t, c)

	r = c.fails(exitCorrupt, "verify")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.GreaterOrEqual(t, len(lines), 2, "at least one problem and the summary:\n%s", r.stdout)
	for _, l := range lines[:len(lines)-1] {
		assert.True(t, strings.HasPrefix(l, id+" "), "each problem names the snapshot: %q", l)
		assert.Contains(t, l, "corrupt")
	}
	var v verifyJSON
	r = c.run("--json", "verify")
	require.Equal(t, exitCorrupt, r.code)
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &v), r.stdout)
	assert.False(t, v.OK)
	assert.NotEmpty(t, v.Problems)
	assert.Equal(t, id, v.Problems[0].SnapshotID)
}
