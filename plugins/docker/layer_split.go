package docker

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// A layer tar travels split the way Docker's own tar-split keeps it: its
// bytes with the file bodies cut out ("heads": tar headers, padding,
// trailer) and each non-empty file body as its own entry, alternating in
// tar order:
//
//	<layer>/00000000.h   magic, the tar's size, then the bytes before body 0
//	<layer>/00000000.m   body 0
//	<layer>/00000001.h   the bytes between body 0 and body 1
//	...
//	<layer>/<n>.h        the bytes after the last body (n = number of bodies)
//
// The host then stores each file inside an image by the file's own
// content — the same chunks as the same file in another layer, another
// image, or a venv captured by another engine — and a restore splices the
// pieces back into the byte-identical tar, so the layer keeps its diff ID
// and the image its ID. Splitting streams: nothing is buffered but one
// tar header. A tar that does not parse (or holds a sparse file, whose
// stored bytes are not its body as read) goes on as one body from there.

// layerSplitMagic starts a split layer's first piece.
const layerSplitMagic = "ptest-snap layer split v1\n"

var pieceName = regexp.MustCompile(`^([0-9]{8})\.([hm])$`)

// pieceHead and pieceBody name the pieces of a split layer.
func pieceHead(layer string, i int) string { return fmt.Sprintf("%s/%08d.h", layer, i) }
func pieceBody(layer string, i int) string { return fmt.Sprintf("%s/%08d.m", layer, i) }

// parsePiece splits a piece's path into its layer, index and kind.
func parsePiece(p string) (layer string, i int, head bool, ok bool) {
	dir, name, found := cutLast(p)
	if !found {
		return "", 0, false, false
	}
	m := pieceName.FindStringSubmatch(name)
	if m == nil {
		return "", 0, false, false
	}
	i, err := strconv.Atoi(m[1])
	if err != nil {
		return "", 0, false, false
	}
	return dir, i, m[2] == "h", true
}

func cutLast(p string) (dir, name string, ok bool) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "", p, false
	}
	return p[:i], p[i+1:], true
}

// firstHead is the content of piece 0's head: magic, size, then meta.
func firstHead(size int64, meta []byte) []byte {
	b := append([]byte(layerSplitMagic), binary.AppendUvarint(nil, uint64(size))...)
	return append(b, meta...)
}

// parseFirstHead returns the tar's size and the meta bytes of piece 0.
func parseFirstHead(b []byte) (size int64, meta []byte, err error) {
	rest, ok := bytes.CutPrefix(b, []byte(layerSplitMagic))
	if !ok {
		return 0, nil, fmt.Errorf("not a split layer's first piece")
	}
	v, n := binary.Uvarint(rest)
	if n <= 0 || v > 1<<50 {
		return 0, nil, fmt.Errorf("bad size in a split layer's first piece")
	}
	return int64(v), rest[n:], nil
}

// countingRecorder is the reader the splitter parses the tar through: it
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

// splitLayer reads a layer tar of the given size from r and calls head
// with each head's bytes and body with each body's size and reader (which
// must be read to the end before body returns), alternating, starting and
// ending with a head. Piece 0's head is already prefixed (firstHead).
func splitLayer(r io.Reader, size int64, head func(i int, b []byte) error, body func(i int, size int64, r io.Reader) error) error {
	// No read-ahead buffer: positions must be exact. tar.Reader reads
	// headers as whole blocks and bodies by their size.
	cr := &countingRecorder{r: io.LimitReader(r, size), recording: true}
	tr := tar.NewReader(cr)
	i := 0
	emitHead := func() error {
		b := cr.rec.Bytes()
		if i == 0 {
			b = firstHead(size, b)
		}
		err := head(i, b)
		cr.rec.Reset()
		return err
	}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err == nil && (hdr.Typeflag == tar.TypeGNUSparse || isPAXSparse(hdr)) {
			err = fmt.Errorf("sparse file %q", hdr.Name)
		}
		if err != nil {
			// What was read so far is a head; the rest is one body.
			if err := emitHead(); err != nil {
				return err
			}
			cr.recording = false
			if err := body(i, size-cr.pos, cr); err != nil {
				return err
			}
			i++
			break
		}
		if hdr.Typeflag != tar.TypeReg || hdr.Size == 0 {
			continue
		}
		if err := emitHead(); err != nil {
			return err
		}
		cr.recording = false
		start := cr.pos
		if err := body(i, hdr.Size, tr); err != nil {
			return err
		}
		if cr.pos != start+hdr.Size {
			return fmt.Errorf("body %d of the layer was not read to its end", i)
		}
		cr.recording = true
		i++
	}
	cr.recording = true
	if _, err := io.Copy(io.Discard, cr); err != nil {
		return err
	}
	if cr.pos != size {
		return fmt.Errorf("layer tar ended after %d of %d bytes", cr.pos, size)
	}
	return emitHead()
}

func isPAXSparse(hdr *tar.Header) bool {
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}
