package fstree

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestCachedIO(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	body := strings.Repeat("0123456789", 10000)
	writeFile(t, p, body, 0o644)

	fd, err := openCached(unix.AT_FDCWD, p)
	require.NoError(t, err)
	buf := make([]byte, len(body))
	n, err := preadFull(fd, buf)
	require.NoError(t, err)
	assert.Equal(t, len(body), n)
	assert.Equal(t, body, string(buf))
	n, _, err = preadCached(fd, buf[:10], 5)
	require.NoError(t, err)
	assert.Equal(t, "5678901234", string(buf[:n]))
	n, _, err = preadCached(fd, buf, int64(len(body)))
	require.NoError(t, err)
	assert.Zero(t, n, "end of file")
	var st unix.Stat_t
	require.NoError(t, fstatRaw(fd, &st))
	assert.Equal(t, int64(len(body)), st.Size)
	closeRaw(fd)
	assert.ErrorIs(t, fstatRaw(fd, &st), unix.EBADF, "closed")

	// Errors are the usual ones, whichever way the file was opened.
	_, err = openCached(unix.AT_FDCWD, filepath.Join(dir, "missing"))
	assert.ErrorIs(t, err, os.ErrNotExist)
	require.NoError(t, os.Symlink("f", filepath.Join(dir, "link")))
	_, err = openCached(unix.AT_FDCWD, filepath.Join(dir, "link"))
	assert.ErrorIs(t, err, unix.ELOOP, "symlinks are not followed")
	_, _, err = preadCached(-1, buf, 0)
	assert.ErrorIs(t, err, unix.EBADF)
}
