package core

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// A chunk's kind is its file's extension, if it looks like one.
func TestChunkKind(t *testing.T) {
	for name, want := range map[string]string{
		"site.py":                 ".py",
		"site.cpython-311.pyc":    ".pyc",
		"METADATA":                "",
		".bashrc":                 "",
		"libz.so.1":               ".1",
		"archive.tar.gz":          ".gz",
		"name.with-a-long-suffix": "",
		"trailing.":               ".",
	} {
		assert.Equal(t, want, chunkKind(name), name)
	}
}
