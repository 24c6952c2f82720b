package pluginapi

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSweepSocketDirs(t *testing.T) {
	// No process has this PID: it is above any pid_max Linux allows.
	const deadPID = 1<<31 - 16
	now := time.Now()
	old, recent := now.Add(-2*staleSocketDirAge), now.Add(-staleSocketDirAge/2)
	cases := []struct {
		name string
		dir  string
		age  time.Time
		kept bool
	}{
		{"dead host, old", fmt.Sprintf("%s%d-123", socketDirPrefix, deadPID), old, false},
		{"dead host, recent", fmt.Sprintf("%s%d-456", socketDirPrefix, deadPID), recent, true},
		{"this host", fmt.Sprintf("%s%d-789", socketDirPrefix, os.Getpid()), old, true},
		{"live host", socketDirPrefix + "1-1", old, true},
		{"name without a PID", socketDirPrefix + "1140114966", old, true},
		{"another program's", "other-" + fmt.Sprint(deadPID) + "-1", old, true},
	}
	tmp := t.TempDir()
	for _, c := range cases {
		p := filepath.Join(tmp, c.dir)
		require.NoError(t, os.Mkdir(p, 0o700))
		require.NoError(t, os.WriteFile(filepath.Join(p, "plugin1"), nil, 0o600))
		require.NoError(t, os.Chtimes(p, c.age, c.age))
	}
	sweepSocketDirs(tmp, now)
	for _, c := range cases {
		_, err := os.Stat(filepath.Join(tmp, c.dir))
		if c.kept {
			assert.NoError(t, err, c.name)
		} else {
			assert.True(t, os.IsNotExist(err), "%s: %v", c.name, err)
		}
	}
}

func TestSocketDirNamedForHost(t *testing.T) {
	dir, err := makeSocketDir()
	require.NoError(t, err)
	defer os.RemoveAll(dir)
	pid, ok := socketDirPID(filepath.Base(dir))
	require.True(t, ok, dir)
	assert.Equal(t, os.Getpid(), pid)
	assert.True(t, strings.HasPrefix(dir, os.TempDir()))
	info, err := os.Stat(dir)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), info.Mode().Perm())
}
