package store

import (
	"bufio"
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// vlogRSS sums the resident size of this process's value-log mappings
// under prefix, from /proc/self/smaps.
func vlogRSS(t *testing.T, prefix string) int64 {
	f, err := os.Open("/proc/self/smaps")
	require.NoError(t, err)
	defer f.Close()
	var total int64
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			in = len(fields) == 6 && strings.HasPrefix(fields[5], prefix) && strings.HasSuffix(fields[5], ".vlog")
			continue
		}
		if in && len(fields) == 3 && fields[0] == "Rss:" {
			kb, _ := strconv.ParseInt(fields[1], 10, 64)
			total += kb << 10
		}
	}
	return total
}

// TestValueLogPagesReleased writes 40 MiB of incompressible chunks and
// checks that the value-log pages do not stay in the process's RSS, and
// that every chunk still reads back intact afterwards.
func TestValueLogPagesReleased(t *testing.T) {
	if _, err := os.Stat("/proc/self/smaps"); err != nil {
		t.Skip("no /proc/self/smaps")
	}
	ctx := context.Background()
	s := openTest(t, "")
	require.NotEmpty(t, s.mapsPrefix)
	w, err := s.NewWriter(ctx)
	require.NoError(t, err)
	tree := &Tree{}
	var chunks [][]byte
	for i := 0; i < 40; i++ {
		data := randomBytes(uint64(500+i), 1<<20)
		h, err := w.PutChunk(ctx, data)
		require.NoError(t, err)
		chunks = append(chunks, data)
		tree.Nodes = append(tree.Nodes, Node{Name: "f" + strconv.Itoa(1000+i), Type: NodeFile, Size: 1 << 20, Content: []Hash{h}})
	}
	root, err := w.PutTree(ctx, tree)
	require.NoError(t, err)
	require.NoError(t, w.Commit(ctx, &Snapshot{ID: "big", Engine: "dir", EnvID: "e", CreatedAt: time.Now(), Streams: []Stream{{Name: "rootfs", Root: root}}}, nil))

	rss := vlogRSS(t, s.mapsPrefix)
	t.Logf("value-log RSS after committing 40 MiB: %d KiB", rss>>10)
	assert.Less(t, rss, int64(8<<20), "the value log's pages are not kept in our RSS")

	for i, n := range tree.Nodes {
		got, err := s.GetChunk(ctx, n.Content[0])
		require.NoError(t, err)
		require.Equal(t, chunks[i], got)
	}
	rep, err := s.Verify(ctx, nil, nil)
	require.NoError(t, err)
	assert.Empty(t, rep.Problems)
}
