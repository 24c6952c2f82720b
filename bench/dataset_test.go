package main

import (
	"crypto/sha256"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// treeDigest hashes every path and file body of a tree, in walk order.
func treeDigest(t *testing.T, root string) (digest [32]byte, files int, bytes int64) {
	t.Helper()
	h := sha256.New()
	require.NoError(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		rel, _ := filepath.Rel(root, p)
		h.Write([]byte(rel + "\x00"))
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			h.Write(b)
			files++
			bytes += int64(len(b))
		}
		return nil
	}))
	copy(digest[:], h.Sum(nil))
	return digest, files, bytes
}

func TestSyntheticIsDeterministic(t *testing.T) {
	spec := SyntheticSpec{Files: 60, MedianSize: 1500, Sigma: 1.2, RandomFraction: 0.2, FilesPerDir: 7, Seed: 42}
	a, b := t.TempDir(), t.TempDir()
	na, err := makeSynthetic(a, spec)
	require.NoError(t, err)
	nb, err := makeSynthetic(b, spec)
	require.NoError(t, err)
	assert.Equal(t, na, nb)
	da, files, size := treeDigest(t, a)
	db, _, _ := treeDigest(t, b)
	assert.Equal(t, da, db, "same seed, same tree")
	assert.Equal(t, 60, files)
	assert.Equal(t, na, size, "reported size is the bytes written")

	spec.Seed = 43
	c := t.TempDir()
	_, err = makeSynthetic(c, spec)
	require.NoError(t, err)
	dc, _, _ := treeDigest(t, c)
	assert.NotEqual(t, da, dc, "another seed, another tree")
}

func TestTextGenIsCompressibleLikeSource(t *testing.T) {
	g := newTextGen(1)
	txt := g.text(4096)
	assert.Len(t, txt, 4096)
	assert.Greater(t, strings.Count(string(txt), "\n"), 40, "lines, like source code")
	assert.Len(t, g.random(1001), 1001)
}

// fakeSitePackages lays out a venv-shaped tree with packages of given sizes.
func fakeSitePackages(t *testing.T, sizes map[string]int) string {
	t.Helper()
	venv := t.TempDir()
	sp := filepath.Join(venv, "lib", "python3.11", "site-packages")
	g := newTextGen(9)
	for name, size := range sizes {
		require.NoError(t, os.MkdirAll(filepath.Join(sp, name), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(sp, name, "__init__.py"), g.text(size), 0o644))
		require.NoError(t, os.MkdirAll(filepath.Join(sp, name+"-1.0.dist-info"), 0o755))
	}
	return venv
}

func TestChangeSmall(t *testing.T) {
	venv := fakeSitePackages(t, map[string]int{"big": 11 << 20, "bigger": 20 << 20, "tiny": 1000})
	sp := filepath.Join(venv, "lib", "python3.11", "site-packages")
	require.NoError(t, changeSmall(venv, 3))

	assert.NoDirExists(t, filepath.Join(sp, "big"), "the smallest package of 10 MB or more goes")
	assert.NoDirExists(t, filepath.Join(sp, "big-1.0.dist-info"), "with its dist-info")
	assert.DirExists(t, filepath.Join(sp, "bigger"))
	assert.FileExists(t, filepath.Join(sp, "benchpkg_3-1.0.dist-info", "METADATA"))
	added, err := treeSize(filepath.Join(sp, "benchpkg_3"))
	require.NoError(t, err)
	assert.Equal(t, int64(5<<20), added, "about 5 MB of new content")
	b, err := os.ReadFile(filepath.Join(sp, "tiny", "__init__.py"))
	require.NoError(t, err)
	assert.Contains(t, string(b), "# bench change 3", "appended lines land in .py files")
}

func TestChangeLargeRewritesAThird(t *testing.T) {
	dir := t.TempDir()
	_, err := makeSynthetic(dir, SyntheticSpec{Files: 30, MedianSize: 800, Sigma: 0.5, FilesPerDir: 10, Seed: 5})
	require.NoError(t, err)
	before := map[string][]byte{}
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if d.Type().IsRegular() {
			before[p], _ = os.ReadFile(p)
		}
		return err
	}))
	require.NoError(t, changeLarge(dir, 11))
	changed := 0
	for p, old := range before {
		now, err := os.ReadFile(p)
		require.NoError(t, err)
		assert.Len(t, now, len(old), "same size")
		if string(now) != string(old) {
			changed++
		}
	}
	assert.Equal(t, 10, changed)
}
