package docker

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pieces is a split layer as the host would hold it.
type pieces struct {
	heads  [][]byte
	bodies [][]byte
}

func split(t testing.TB, data []byte) *pieces {
	ps := &pieces{}
	err := splitLayer(bytes.NewReader(data), int64(len(data)),
		func(i int, b []byte) error {
			if i != len(ps.heads) || len(ps.heads) != len(ps.bodies) {
				t.Fatalf("head %d out of order", i)
			}
			ps.heads = append(ps.heads, bytes.Clone(b))
			return nil
		},
		func(i int, n int64, r io.Reader) error {
			if i != len(ps.bodies) || len(ps.heads) != len(ps.bodies)+1 {
				t.Fatalf("body %d out of order", i)
			}
			b, err := io.ReadAll(r)
			if int64(len(b)) != n {
				t.Fatalf("body %d: %d bytes, said %d", i, len(b), n)
			}
			ps.bodies = append(ps.bodies, b)
			return err
		})
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

// splice reassembles a layer tar from its pieces, as a restore does.
func splice(t testing.TB, ps *pieces) []byte {
	if len(ps.heads) != len(ps.bodies)+1 {
		t.Fatalf("%d heads for %d bodies", len(ps.heads), len(ps.bodies))
	}
	size, meta, err := parseFirstHead(ps.heads[0])
	if err != nil {
		t.Fatal(err)
	}
	out := bytes.NewBuffer(bytes.Clone(meta))
	for i, b := range ps.bodies {
		out.Write(b)
		out.Write(ps.heads[i+1])
	}
	if int64(out.Len()) != size {
		t.Fatalf("spliced %d bytes, first head says %d", out.Len(), size)
	}
	return out.Bytes()
}

func testTar(t testing.TB, format tar.Format) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mt := time.Unix(1700000000, 123456789)
	add := func(h *tar.Header, body string) {
		h.ModTime, h.Format = mt, format
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(body))
		}
		require.NoError(t, tw.WriteHeader(h))
		if body != "" {
			_, err := tw.Write([]byte(body))
			require.NoError(t, err)
		}
	}
	add(&tar.Header{Name: "usr/", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	add(&tar.Header{Name: "usr/empty", Typeflag: tar.TypeReg, Mode: 0o644}, "")
	add(&tar.Header{Name: "usr/a.txt", Typeflag: tar.TypeReg, Mode: 0o644, Uid: 1000}, "hello")
	add(&tar.Header{Name: "usr/" + strings.Repeat("long-name/", 20) + "b", Typeflag: tar.TypeReg, Mode: 0o600}, strings.Repeat("x", 1000))
	add(&tar.Header{Name: "usr/link", Typeflag: tar.TypeSymlink, Linkname: "a.txt"}, "")
	add(&tar.Header{Name: "usr/hard", Typeflag: tar.TypeLink, Linkname: "usr/a.txt"}, "")
	add(&tar.Header{Name: "usr/.wh.deleted", Typeflag: tar.TypeReg}, "")
	if format == tar.FormatPAX {
		add(&tar.Header{Name: "usr/x", Typeflag: tar.TypeReg, PAXRecords: map[string]string{"SCHILY.xattr.user.k": "v"}}, strings.Repeat("y", 512))
	}
	require.NoError(t, tw.Close())
	return buf.Bytes()
}

func TestSplitLayerReassemblesExactly(t *testing.T) {
	for _, format := range []tar.Format{tar.FormatUSTAR | tar.FormatPAX, tar.FormatPAX, tar.FormatGNU} {
		data := testTar(t, format)
		ps := split(t, data)
		assert.Len(t, ps.bodies, 2+btoi(format == tar.FormatPAX), "only non-empty regular files are bodies")
		assert.Equal(t, "hello", string(ps.bodies[0]))
		assert.Equal(t, data, splice(t, ps))
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestSplitLayerFallsBackToOneBody(t *testing.T) {
	junk := []byte("this is not a tar file at all, but it is a layer's bytes")
	ps := split(t, junk)
	require.Len(t, ps.bodies, 1)
	assert.Equal(t, junk, splice(t, ps))

	// A valid start followed by garbage: the rest is one body.
	data := testTar(t, tar.FormatPAX)
	data = append(data[:2048:2048], bytes.Repeat([]byte{0xff}, 3000)...)
	ps = split(t, data)
	assert.Equal(t, data, splice(t, ps))
}

func TestPieceNames(t *testing.T) {
	layer, i, head, ok := parsePiece(pieceHead("abc/layer.tar", 12))
	assert.True(t, ok)
	assert.Equal(t, "abc/layer.tar", layer)
	assert.Equal(t, 12, i)
	assert.True(t, head)
	_, i, head, ok = parsePiece(pieceBody("blobs/sha256/x", 3))
	assert.True(t, ok && !head && i == 3)
	for _, bad := range []string{"abc", "abc/1.h", "abc/00000001.x", "abc/json"} {
		_, _, _, ok := parsePiece(bad)
		assert.False(t, ok, bad)
	}
	assert.True(t, preorderLess(pieceHead("l", 0), pieceBody("l", 0)))
	assert.True(t, preorderLess(pieceBody("l", 0), pieceHead("l", 1)))
}

func FuzzParseFirstHead(f *testing.F) {
	f.Add(firstHead(1234, []byte("meta")))
	f.Add([]byte(layerSplitMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		size, meta, err := parseFirstHead(b)
		if err == nil && (size < 0 || len(meta) > len(b)) {
			t.Fatalf("accepted a bad first head")
		}
	})
}

// FuzzSplitLayer: whatever the bytes, the pieces reassemble them exactly.
func FuzzSplitLayer(f *testing.F) {
	f.Add(testTar(f, tar.FormatPAX))
	f.Add(testTar(f, tar.FormatGNU))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		if got := splice(t, split(t, data)); !bytes.Equal(got, data) {
			t.Fatalf("reassembled %d bytes differ from the %d split", len(got), len(data))
		}
	})
}

// BenchmarkSplitLayer: the cost of splitting a layer of many small files,
// what a capture adds to reading `docker save` (measured 2.6 GB/s).
//
//	go test -run '^$' -bench SplitLayer ./plugins/docker/
func BenchmarkSplitLayer(b *testing.B) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	body := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	for i := 0; i < 2000; i++ {
		n := 1 + (i*7919)%len(body)
		require.NoError(b, tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("usr/lib/f%05d.py", i), Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(n)}))
		_, err := tw.Write(body[:n])
		require.NoError(b, err)
	}
	require.NoError(b, tw.Close())
	data := buf.Bytes()
	b.Run("split", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			err := splitLayer(bytes.NewReader(data), int64(len(data)),
				func(int, []byte) error { return nil },
				func(_ int, _ int64, r io.Reader) error { _, err := io.Copy(io.Discard, r); return err })
			require.NoError(b, err)
		}
	})
}
