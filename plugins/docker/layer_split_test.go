package docker

import (
	"archive/tar"
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// splice reassembles a layer tar from its split, as a restore does.
func splice(t testing.TB, data []byte, ls *layerSplit) []byte {
	var out bytes.Buffer
	for i, m := range ls.members {
		out.Write(ls.metas[i])
		out.Write(data[m.off : m.off+m.size])
	}
	out.Write(ls.metas[len(ls.members)])
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
		ls, err := splitLayer(bytes.NewReader(data), int64(len(data)))
		require.NoError(t, err)
		assert.Len(t, ls.members, 2+btoi(format == tar.FormatPAX), "only non-empty regular files are members")
		parsed, err := parseHeadersFile(ls.headersFile())
		require.NoError(t, err)
		parsed.members = ls.members
		assert.Equal(t, data, splice(t, data, parsed))
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestSplitLayerFallsBackToWhole(t *testing.T) {
	junk := []byte("this is not a tar file at all, but it is a layer's bytes")
	ls, err := splitLayer(bytes.NewReader(junk), int64(len(junk)))
	require.NoError(t, err)
	require.Len(t, ls.members, 1)
	assert.Equal(t, junk, splice(t, junk, ls))
}

func TestParseHeadersFileRejectsDamage(t *testing.T) {
	data := testTar(t, tar.FormatPAX)
	ls, err := splitLayer(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	hf := ls.headersFile()
	for _, bad := range [][]byte{nil, []byte("garbage"), hf[:len(hf)-1], append(bytes.Clone(hf), 0)} {
		_, err := parseHeadersFile(bad)
		assert.Error(t, err)
	}
}

func FuzzParseHeadersFile(f *testing.F) {
	data := testTar(f, tar.FormatPAX)
	ls, _ := splitLayer(bytes.NewReader(data), int64(len(data)))
	f.Add(ls.headersFile())
	f.Add([]byte(layerSplitMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		ls, err := parseHeadersFile(b)
		if err != nil {
			return
		}
		var total int64
		for _, m := range ls.metas {
			total += int64(len(m))
		}
		if total > ls.size || len(ls.metas) != len(ls.members)+1 {
			t.Fatalf("accepted an inconsistent headers file")
		}
	})
}

// FuzzSplitLayer: whatever the bytes, the split reassembles them exactly.
func FuzzSplitLayer(f *testing.F) {
	f.Add(testTar(f, tar.FormatPAX))
	f.Add(testTar(f, tar.FormatGNU))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		ls, err := splitLayer(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		parsed, err := parseHeadersFile(ls.headersFile())
		if err != nil {
			t.Fatal(err)
		}
		parsed.members = ls.members
		if got := splice(t, data, parsed); !bytes.Equal(got, data) {
			t.Fatalf("reassembled %d bytes differ from the %d split", len(got), len(data))
		}
	})
}
