package virtualenv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestScanDistributionsLongHeaders: the metadata scan shares one small
// buffer between its files; a header line longer than the buffer, and
// Name and Version behind more than the buffer's worth of headers, are
// still read, and a long file does not spoil the next one's headers.
func TestScanDistributionsLongHeaders(t *testing.T) {
	venv := t.TempDir()
	site := filepath.Join(venv, "lib", "python3.11", "site-packages")
	write := func(dist, metadata string) {
		dir := filepath.Join(site, dist+".dist-info")
		require.NoError(t, os.MkdirAll(dir, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "METADATA"), []byte(metadata), 0o644))
	}
	long := strings.Repeat("x", 3*metadataReadSize)
	write("a_long_line-1.0", "Metadata-Version: 2.1\nSummary: "+long+"\nName: A_Long.Line\nVersion: 1.0\n\n"+long)
	var many strings.Builder
	for range metadataReadSize / 16 {
		many.WriteString("Classifier: abcdefghijk\n")
	}
	write("b_late-2.0", "Metadata-Version: 2.1\n"+many.String()+"Name: b-late\nVersion: 2.0\n\nbody")
	write("c-3.0", "Metadata-Version: 2.1\nName: c\nVersion: 3.0\n\n"+long)

	d := scanDistributions(venv)
	assert.Equal(t, map[string]string{"a-long-line": "1.0", "b-late": "2.0", "c": "3.0"}, d.Installed)
	assert.Equal(t, []string{"lib/python3.11/site-packages"}, d.SitePackages)
}
