package store

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestValueBufSizes(t *testing.T) {
	assert.Nil(t, getValueBuf(valuePoolMin-1), "small values are not pooled")
	assert.Nil(t, getValueBuf(valuePoolMin<<valuePoolClasses+1), "nor huge ones")
	for _, n := range []int{valuePoolMin, valuePoolMin + 1, 600 << 10, 8 << 20} {
		bp := getValueBuf(n)
		require.NotNil(t, bp, n)
		assert.Len(t, *bp, n)
		assert.GreaterOrEqual(t, cap(*bp), n)
		assert.Less(t, cap(*bp), 2*n+1, "at most twice the size")
		putValueBuf(bp)
	}
}

// A value read from the queue is the reader's own: the queue recycles its
// buffer once it is written.
func TestQueuedValueIsCopied(t *testing.T) {
	s := openTest(t, "")
	val := bytes.Repeat([]byte{7}, 100<<10)
	bp := getValueBuf(len(val))
	copy(*bp, val)
	key := chunkKey(SumChunk([]byte("k")))
	s.chunks.mu.Lock()
	s.chunks.unflushed[string(key)] = *bp
	s.chunks.mu.Unlock()
	got, ok := s.chunks.get(key)
	require.True(t, ok)
	(*bp)[0] = 8
	assert.Equal(t, val, got)
	s.chunks.mu.Lock()
	delete(s.chunks.unflushed, string(key))
	s.chunks.mu.Unlock()
}

// Packs and large chunks go through pooled buffers; what is read back after
// many more writes (the buffers recycled meanwhile) is what was put.
func TestPooledValuesReadBack(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	w, err := s.NewWriter(ctx)
	require.NoError(t, err)
	var data [][]byte
	var hs []Hash
	for i := 0; i < 40; i++ {
		b := bytes.Repeat([]byte{byte(i), byte(i * 3), 'x'}, 30<<10+i*1000) // 90..207 KiB, alone
		h, err := w.PutChunk(ctx, b)
		require.NoError(t, err)
		data, hs = append(data, b), append(hs, h)
	}
	for name, b := range testFiles(3, 2000, 2000) { // 4 MB of packed files
		h, err := w.PutChunk(ctx, b)
		require.NoError(t, err, name)
		data, hs = append(data, b), append(hs, h)
	}
	require.NoError(t, w.Commit(ctx, &Snapshot{ID: "one", Engine: "dir", EnvID: "env1"}, nil))
	for i, h := range hs {
		got, err := s.GetChunk(ctx, h)
		require.NoError(t, err)
		require.Equal(t, data[i], got)
	}
}
