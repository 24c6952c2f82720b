package core

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/pluginapi"
)

// renamingEngine names every target's environment envID, whatever its path.
type renamingEngine struct {
	*countingEngine
	envID string
}

func (e *renamingEngine) Identify(ctx context.Context, target string, opts map[string]string) (pluginapi.Identity, error) {
	id, err := e.countingEngine.Identify(ctx, target, opts)
	if e.envID != "" {
		id.EnvID = e.envID
	}
	return id, err
}

// TestCreateGuessedParentMissed: the parent prepared while the engine
// starts is a guess from the target's path; when the engine names the
// environment otherwise, the guess is dropped and the parent is the one
// chosen for the engine's environment (here, at first, none).
func TestCreateGuessedParentMissed(t *testing.T) {
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	eng := &renamingEngine{countingEngine: &countingEngine{Engine: newDirEngine()}}
	m := openManager(t, map[string]pluginapi.Engine{"dir": eng})

	s1, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src})
	require.NoError(t, err)
	all := eng.bodies.Load()

	// The guess (the environment named by the path) finds s1; the engine
	// says the environment is another one, which has no snapshot yet.
	eng.envID = "elsewhere"
	eng.bodies.Store(0)
	s2, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src})
	require.NoError(t, err)
	assert.Empty(t, s2.Parent, "the guessed parent was not used")
	assert.Equal(t, all, eng.bodies.Load(), "every file read")
	assert.Equal(t, s1.Streams, s2.Streams)

	// Now the environment "elsewhere" has s2: the guess misses again (it
	// looks under the path), and the parent is s2, prepared then.
	eng.bodies.Store(0)
	s3, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src})
	require.NoError(t, err)
	assert.Equal(t, s2.ID, s3.Parent)
	assert.Zero(t, eng.bodies.Load(), "nothing read again")

	// An explicit parent is prepared ahead exactly.
	s4, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src, Parent: s1.ID})
	require.NoError(t, err)
	assert.Equal(t, s1.ID, s4.Parent)
	assert.Zero(t, eng.bodies.Load(), "nothing read again")

	rep, err := m.Store().Verify(ctx, nil, nil)
	require.NoError(t, err)
	assert.Empty(t, rep.Problems)
}

// TestParentAheadFormGuess: the parent prepared ahead is read as
// fingerprints unless the engine said otherwise in time; taken for an
// engine that takes the packed form, it is read again so, with the same
// records; taken in the form it was read in, it is used as it is.
func TestParentAheadFormGuess(t *testing.T) {
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	m := openManager(t, map[string]pluginapi.Engine{"dir": newDirEngine()})
	s1, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src})
	require.NoError(t, err)

	start := func(form parentForm) *parentAhead {
		// The form is set before the preparation starts: "known in
		// time" must not depend on which goroutine runs first.
		a := m.startParentAheadIn(ctx, CreateOptions{Engine: "dir", Target: src, Parent: s1.ID}, form)
		require.NotNil(t, a)
		<-a.done
		return a
	}

	// Unknown: fingerprints, then read again packed when taken so.
	a := start(formUnknown)
	require.Equal(t, formPrinted, a.p.form)
	require.NoError(t, a.p.indexErr)
	records := a.p.prints.Len()
	assert.Greater(t, records, 10)
	assert.Nil(t, a.p.idx)
	dirs := a.p.dirs
	p := a.take(ctx, s1.ID, formPacked)
	require.NotNil(t, p)
	require.NoError(t, p.indexErr)
	assert.Equal(t, formPacked, p.form)
	assert.Nil(t, p.prints)
	n := 0
	for _, idx := range p.idx {
		n += idx.Len()
	}
	assert.Equal(t, records, n)
	assert.Equal(t, dirs, p.dirs)
	p.w.Abort()

	// Known in time: read in that form, and taken as it is.
	a = start(formPacked)
	require.Equal(t, formPacked, a.p.form)
	idx := a.p.idx
	p = a.take(ctx, s1.ID, formPacked)
	require.NotNil(t, p)
	assert.Equal(t, idx, p.idx, "not read again")
	p.w.Abort()

	a = start(formUnknown)
	prints := a.p.prints
	p = a.take(ctx, s1.ID, formPrinted)
	require.NotNil(t, p)
	assert.Same(t, prints, p.prints, "not read again")
	req := &pluginapi.CaptureRequest{}
	require.NoError(t, p.setRequest(newDirEngine(), req))
	assert.Same(t, prints, req.ParentPrinted)
	assert.Nil(t, req.Parent)
	assert.Nil(t, req.ParentPacked)
	p.w.Abort()
}

// TestPluginCreateWithPrintedParent: through the real plugin, which takes
// fingerprints, the host sends the parent fingerprinted as it read it, and
// a file unchanged but for its inode, ctime or mtime is read again while
// the unchanged ones are not.
func TestPluginCreateWithPrintedParent(t *testing.T) {
	path := dirPluginPath(t)
	ctx := context.Background()
	host := pluginapi.NewHost(pluginapi.HostOptions{})
	defer host.Close()
	p, err := host.Launch(ctx, pluginapi.Spec{Name: "dir", Path: path})
	require.NoError(t, err)
	defer p.Close()
	eng := &countingEngine{Engine: p}
	m := openManager(t, map[string]pluginapi.Engine{"dir": eng})

	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	s1, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src})
	require.NoError(t, err)
	info, err := p.Info(ctx)
	require.NoError(t, err)
	require.True(t, info.Has(pluginapi.CapParentFingerprints))
	require.True(t, pluginapi.TakesParentFingerprints(p))
	assert.False(t, pluginapi.TakesParentFingerprints(newDirEngine()))

	// Same bytes, same size and mtime, new inode and ctime: read again.
	a := filepath.Join(src, "a.txt")
	b, err := os.ReadFile(a)
	require.NoError(t, err)
	require.NoError(t, os.Remove(a))
	writeFile(t, a, b, 0o644, fixedTime)
	eng.bodies.Store(0)
	s2, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src})
	require.NoError(t, err)
	require.Equal(t, s1.ID, s2.Parent)
	require.EqualValues(t, 1, eng.bodies.Load(), "only the replaced file is read")

	eng.bodies.Store(0)
	s3, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src})
	require.NoError(t, err)
	require.Equal(t, s2.ID, s3.Parent)
	require.Zero(t, eng.bodies.Load(), "nothing read")
}
