package docker

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// A layer travels split the way Docker's own tar-split keeps it: the layer
// tar's bytes with the file bodies cut out (its "headers": tar headers,
// padding, trailer) and each body as its own entry ("members", in tar
// order). The host then stores a file inside an image by the file's own
// content — the same chunks as the same file captured by another engine,
// or inside another image — and a restore splices the pieces back into
// the byte-identical tar, so the layer keeps its diff ID and the image its
// ID.

// layerSplitMagic starts a headers file.
const layerSplitMagic = "ptest-snap layer split v1\n"

// layerSplit is where a layer tar's pieces are.
type layerSplit struct {
	size int64
	// metas[i] are the bytes before member i; metas[len(members)] the
	// bytes after the last one.
	metas   [][]byte
	members []span
}

type span struct{ off, size int64 }

// countingRecorder is the reader splitLayer parses the tar through: it
// counts every byte and records those read while recording is on.
type countingRecorder struct {
	r         io.Reader
	pos       int64
	recording bool
	rec       bytes.Buffer
}

func (c *countingRecorder) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.pos += int64(n)
	if c.recording {
		c.rec.Write(p[:n])
	}
	return n, err
}

// errNotSplittable: the tar holds something whose stored bytes are not its
// body as read (a sparse file) or does not parse; the layer travels whole.
var errNotSplittable = errors.New("layer cannot be split")

// splitLayer finds the bodies in a layer tar of the given size.
func splitLayer(r io.ReaderAt, size int64) (*layerSplit, error) {
	ls, err := trySplit(r, size)
	if errors.Is(err, errNotSplittable) {
		return &layerSplit{size: size, metas: [][]byte{nil, nil}, members: []span{{0, size}}}, nil
	}
	return ls, err
}

func trySplit(r io.ReaderAt, size int64) (*layerSplit, error) {
	// No read-ahead buffer: positions must be exact. tar.Reader reads
	// headers as whole blocks and bodies by their size.
	cr := &countingRecorder{r: io.NewSectionReader(r, 0, size), recording: true}
	tr := tar.NewReader(cr)
	ls := &layerSplit{size: size}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errNotSplittable, err)
		}
		if hdr.Typeflag == tar.TypeGNUSparse || isPAXSparse(hdr) {
			return nil, fmt.Errorf("%w: sparse file %q", errNotSplittable, hdr.Name)
		}
		if hdr.Typeflag != tar.TypeReg || hdr.Size == 0 {
			continue
		}
		start := cr.pos
		ls.metas = append(ls.metas, bytes.Clone(cr.rec.Bytes()))
		cr.rec.Reset()
		cr.recording = false
		n, err := io.Copy(io.Discard, tr)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errNotSplittable, err)
		}
		if n != hdr.Size || cr.pos != start+n {
			return nil, fmt.Errorf("%w: body of %q is not where its header says", errNotSplittable, hdr.Name)
		}
		ls.members = append(ls.members, span{start, n})
		cr.recording = true
	}
	if _, err := io.Copy(io.Discard, cr); err != nil {
		return nil, err
	}
	ls.metas = append(ls.metas, bytes.Clone(cr.rec.Bytes()))
	if cr.pos != size {
		return nil, fmt.Errorf("%w: read %d of %d bytes", errNotSplittable, cr.pos, size)
	}
	return ls, nil
}

func isPAXSparse(hdr *tar.Header) bool {
	for k := range hdr.PAXRecords {
		if len(k) > 11 && k[:11] == "GNU.sparse." {
			return true
		}
	}
	return false
}

// headersFile encodes the split's non-body bytes: the magic, the tar's
// size, the member count, then each meta as a length-prefixed block.
func (ls *layerSplit) headersFile() []byte {
	var b bytes.Buffer
	b.WriteString(layerSplitMagic)
	b.Write(binary.AppendUvarint(nil, uint64(ls.size)))
	b.Write(binary.AppendUvarint(nil, uint64(len(ls.members))))
	for _, m := range ls.metas {
		b.Write(binary.AppendUvarint(nil, uint64(len(m))))
		b.Write(m)
	}
	return b.Bytes()
}

// parseHeadersFile decodes a headers file (member spans get sizes only
// when the members arrive).
func parseHeadersFile(data []byte) (*layerSplit, error) {
	rest, ok := bytes.CutPrefix(data, []byte(layerSplitMagic))
	if !ok {
		return nil, fmt.Errorf("not a layer headers file")
	}
	next := func() (uint64, error) {
		v, n := binary.Uvarint(rest)
		if n <= 0 {
			return 0, fmt.Errorf("truncated layer headers file")
		}
		rest = rest[n:]
		return v, nil
	}
	size, err := next()
	if err != nil {
		return nil, err
	}
	count, err := next()
	if err != nil {
		return nil, err
	}
	if size > 1<<50 || count > size/512+1 {
		return nil, fmt.Errorf("implausible layer headers file (%d bytes, %d members)", size, count)
	}
	ls := &layerSplit{size: int64(size)}
	var metaTotal uint64
	for i := uint64(0); i <= count; i++ {
		n, err := next()
		if err != nil {
			return nil, err
		}
		if n > uint64(len(rest)) {
			return nil, fmt.Errorf("truncated layer headers file")
		}
		ls.metas = append(ls.metas, rest[:n])
		rest = rest[n:]
		metaTotal += n
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("layer headers file has %d trailing bytes", len(rest))
	}
	if metaTotal > size {
		return nil, fmt.Errorf("layer headers file: headers exceed the tar's size")
	}
	ls.members = make([]span, count)
	return ls, nil
}
