package core

import (
	"context"
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
