package pluginapi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"

	enginepb "github.com/pypj/ptest-snap/pluginapi/proto"
)

// This file converts between the Go contract's types and their wire form.
// Conversions copy nothing large: byte slices are shared.

func entryToProto(e *Entry) *enginepb.Entry {
	return &enginepb.Entry{
		Path:             e.Path,
		Type:             enginepb.EntryType(e.Type),
		Mode:             e.Mode,
		Uid:              e.UID,
		Gid:              e.GID,
		MtimeNs:          e.MtimeNs,
		CtimeNs:          e.CtimeNs,
		Inode:            e.Inode,
		Size:             e.Size,
		LinkTarget:       e.LinkTarget,
		Xattrs:           e.Xattrs,
		Unchanged:        e.Unchanged,
		Delete:           e.Delete,
		XattrsFromParent: e.XattrsFromParent,
		SubtreeFiles:     e.SubtreeFiles,
		SubtreeDirs:      e.SubtreeDirs,
		SubtreeBytes:     e.SubtreeBytes,
	}
}

func entryFromProto(p *enginepb.Entry) *Entry {
	return &Entry{
		Path:             p.GetPath(),
		Type:             EntryType(p.GetType()),
		Mode:             p.GetMode(),
		UID:              p.GetUid(),
		GID:              p.GetGid(),
		MtimeNs:          p.GetMtimeNs(),
		CtimeNs:          p.GetCtimeNs(),
		Inode:            p.GetInode(),
		Size:             p.GetSize(),
		LinkTarget:       p.GetLinkTarget(),
		Xattrs:           p.GetXattrs(),
		Unchanged:        p.GetUnchanged(),
		Delete:           p.GetDelete(),
		XattrsFromParent: p.GetXattrsFromParent(),
		SubtreeFiles:     p.GetSubtreeFiles(),
		SubtreeDirs:      p.GetSubtreeDirs(),
		SubtreeBytes:     p.GetSubtreeBytes(),
	}
}

func infoToProto(i Info) *enginepb.InfoResponse {
	caps := make([]string, len(i.Capabilities))
	for n, c := range i.Capabilities {
		caps[n] = string(c)
	}
	return &enginepb.InfoResponse{
		Name:            i.Name,
		Version:         i.Version,
		ProtocolVersion: int32(i.ProtocolVersion),
		Capabilities:    caps,
	}
}

func infoFromProto(p *enginepb.InfoResponse) Info {
	caps := make([]Capability, len(p.GetCapabilities()))
	for n, c := range p.GetCapabilities() {
		caps[n] = Capability(c)
	}
	return Info{
		Name:            p.GetName(),
		Version:         p.GetVersion(),
		ProtocolVersion: int(p.GetProtocolVersion()),
		Capabilities:    caps,
	}
}

func metadataToProto(m Metadata) *enginepb.Metadata {
	return &enginepb.Metadata{Version: int32(m.Version), Json: m.JSON}
}

func metadataFromProto(p *enginepb.Metadata) Metadata {
	return Metadata{Version: int(p.GetVersion()), JSON: p.GetJson()}
}

// parentWire says how an engine takes the parent index: packed
// (index_wire.go) or as fingerprints (fingerprints.go), or else as entries.
type parentWire struct{ packed, fingerprints bool }

// captureRequestToProto converts a capture request, with the parent index
// in the form how says.
func captureRequestToProto(r *CaptureRequest, how parentWire) (*enginepb.CaptureRequest, error) {
	ports := make([]int32, len(r.Ports))
	for i, p := range r.Ports {
		ports[i] = int32(p)
	}
	var parent []*enginepb.ParentStream
	var key []byte
	switch {
	case r.ParentPrinted != nil:
		// Fingerprinted as the host read it; any other form given too
		// goes under the same key.
		if !how.fingerprints {
			return nil, errors.New("parent index: fingerprints for an engine that does not take them")
		}
		key = r.ParentPrinted.key
		for _, name := range slices.Sorted(maps.Keys(r.ParentPrinted.streams)) {
			parent = append(parent, &enginepb.ParentStream{Name: name, Fingerprints: r.ParentPrinted.streams[name].b})
		}
		more, err := fingerprintsToProto(key, r.Parent, r.ParentPacked)
		if err != nil {
			return nil, fmt.Errorf("parent index: %w", err)
		}
		parent = append(parent, more...)
	case how.fingerprints && (r.Parent != nil || r.ParentPacked != nil):
		var err error
		if key, err = newFingerprintKey(); err != nil {
			return nil, err
		}
		if parent, err = fingerprintsToProto(key, r.Parent, r.ParentPacked); err != nil {
			return nil, fmt.Errorf("parent index: %w", err)
		}
	case r.ParentPacked != nil && !how.packed:
		// An engine that does not decode packed indexes gets entries.
		idx, err := unpackParent(r.ParentPacked)
		if err != nil {
			return nil, fmt.Errorf("parent index: %w", err)
		}
		parent = append(parentToProto(r.Parent, false), indexToProto(idx)...)
	default:
		parent = parentToProto(r.Parent, how.packed)
		for name, p := range r.ParentPacked {
			parent = append(parent, &enginepb.ParentStream{Name: name, Packed: p.wire()})
		}
	}
	return &enginepb.CaptureRequest{
		Target:    r.Target,
		Excludes:  r.Excludes,
		Env:       r.Env,
		Ports:     ports,
		Options:   r.Options,
		Parent:    parent,
		IndexOnly: r.IndexOnly,

		ParentXattrs:   r.ParentXattrs,
		UnchangedDirs:  r.UnchangedDirs,
		FingerprintKey: key,
	}, nil
}

// fingerprintsToProto returns each stream of idx and packed as
// fingerprints made with key. A stream in both is sent as one.
func fingerprintsToProto(key []byte, idx ParentIndex, packed map[string]*PackedIndex) ([]*enginepb.ParentStream, error) {
	var out []*enginepb.ParentStream
	for name, entries := range idx {
		out = append(out, &enginepb.ParentStream{Name: name, Fingerprints: fingerprintsOfMap(key, entries)})
	}
	for name, p := range packed {
		b, err := fingerprintsOfPacked(key, p)
		if err != nil {
			return nil, fmt.Errorf("stream %q: %w", name, err)
		}
		out = append(out, &enginepb.ParentStream{Name: name, Fingerprints: b})
	}
	return out, nil
}

// indexStreams returns the parent streams that are not sent as
// fingerprints only.
func indexStreams(streams []*enginepb.ParentStream) []*enginepb.ParentStream {
	out := streams[:0:0]
	for _, ps := range streams {
		if len(ps.GetFingerprints()) == 0 || len(ps.GetEntries()) > 0 || len(ps.GetPacked()) > 0 {
			out = append(out, ps)
		}
	}
	return out
}

// fingerprintsFromProto returns the parent streams sent as fingerprints,
// or nil if none was. A stream sent in several parts is one table.
func fingerprintsFromProto(key []byte, streams []*enginepb.ParentStream) (map[string]*ParentFingerprints, error) {
	// A stream sent in one part (as the host does) is decoded where gRPC
	// put it: no copy of its 0.75 MB.
	parts := map[string][][]byte{}
	for _, ps := range streams {
		if f := ps.GetFingerprints(); len(f) > 0 {
			parts[ps.GetName()] = append(parts[ps.GetName()], f)
		}
	}
	if len(parts) == 0 {
		return nil, nil
	}
	out := make(map[string]*ParentFingerprints, len(parts))
	for name, bs := range parts {
		b := bs[0]
		if len(bs) > 1 {
			b = slices.Concat(bs...)
		}
		p, err := decodeFingerprints(key, b)
		if err != nil {
			return nil, fmt.Errorf("stream %q: %w", name, err)
		}
		out[name] = p
	}
	return out, nil
}

func captureRequestFromProto(p *enginepb.CaptureRequest) (*CaptureRequest, error) {
	ports := make([]int, len(p.GetPorts()))
	for i, port := range p.GetPorts() {
		ports[i] = int(port)
	}
	var parent ParentIndex
	if streams := indexStreams(p.GetParent()); len(streams) > 0 {
		var err error
		if parent, err = indexFromProto(streams); err != nil {
			return nil, err
		}
	}
	prints, err := fingerprintsFromProto(p.GetFingerprintKey(), p.GetParent())
	if err != nil {
		return nil, err
	}
	return &CaptureRequest{
		Target:    p.GetTarget(),
		Excludes:  p.GetExcludes(),
		Env:       p.GetEnv(),
		Ports:     ports,
		Options:   p.GetOptions(),
		Parent:    parent,
		IndexOnly: p.GetIndexOnly(),

		ParentXattrs:       p.GetParentXattrs(),
		UnchangedDirs:      p.GetUnchangedDirs(),
		ParentFingerprints: prints,
	}, nil
}

func restoreRequestToProto(r *RestoreRequest) *enginepb.RestoreRequest {
	return &enginepb.RestoreRequest{
		Target:         r.Target,
		OriginalTarget: r.OriginalTarget,
		InPlace:        r.InPlace,
		Replace:        r.Replace,
		Options:        r.Options,
		Metadata:       metadataToProto(r.Metadata),
		Streams:        r.Streams,
		Excludes:       r.Excludes,
		Sparse:         r.Sparse,
	}
}

func restoreRequestFromProto(p *enginepb.RestoreRequest) *RestoreRequest {
	return &RestoreRequest{
		Target:         p.GetTarget(),
		OriginalTarget: p.GetOriginalTarget(),
		InPlace:        p.GetInPlace(),
		Replace:        p.GetReplace(),
		Options:        p.GetOptions(),
		Metadata:       metadataFromProto(p.GetMetadata()),
		Streams:        p.GetStreams(),
		Excludes:       p.GetExcludes(),
		Sparse:         p.GetSparse(),
	}
}

// indexToProto converts a per-stream index (a capture's parent, a
// restore's written files) to its wire form.
func indexToProto(idx ParentIndex) []*enginepb.ParentStream {
	var out []*enginepb.ParentStream
	for name, entries := range idx {
		ps := &enginepb.ParentStream{Name: name, Entries: make([]*enginepb.IndexEntry, 0, len(entries))}
		for path, ie := range entries {
			if ie.Type != 0 {
				// Directories and symlinks travel packed only.
				continue
			}
			ps.Entries = append(ps.Entries, &enginepb.IndexEntry{
				Path: path, Size: ie.Size, MtimeNs: ie.MtimeNs, CtimeNs: ie.CtimeNs, Inode: ie.Inode,
			})
		}
		out = append(out, ps)
	}
	return out
}

// parentToProto is indexToProto, or with packed each stream's entries in
// ParentStream.packed (index_wire.go). Directory and symlink records
// (IndexEntry.Type) are sent packed only.
func parentToProto(idx ParentIndex, packed bool) []*enginepb.ParentStream {
	if !packed {
		return indexToProto(idx)
	}
	var out []*enginepb.ParentStream
	for name, entries := range idx {
		out = append(out, &enginepb.ParentStream{Name: name, Packed: appendPackedIndex(nil, entries)})
	}
	return out
}

// indexFromProto is the inverse of indexToProto and parentToProto; it never
// returns nil.
func indexFromProto(streams []*enginepb.ParentStream) (ParentIndex, error) {
	idx := make(ParentIndex, len(streams))
	for _, ps := range streams {
		m := idx[ps.GetName()]
		if m == nil {
			m = make(map[string]IndexEntry, len(ps.GetEntries())+packedCount(ps.GetPacked()))
			idx[ps.GetName()] = m
		}
		for _, ie := range ps.GetEntries() {
			m[ie.GetPath()] = IndexEntry{Size: ie.GetSize(), MtimeNs: ie.GetMtimeNs(), CtimeNs: ie.GetCtimeNs(), Inode: ie.GetInode()}
		}
		if len(ps.GetPacked()) > 0 {
			if err := decodePackedIndex(ps.GetPacked(), m); err != nil {
				return nil, fmt.Errorf("stream %q: %w", ps.GetName(), err)
			}
		}
	}
	return idx, nil
}

// restoreResultToProto converts an engine's answer to a Restore. A report
// of written files that would not fit in one message is left out (the
// host then lists the target itself); it goes packed to a host that reads
// packed records (RestoreRequest.packed_records).
func restoreResultToProto(res *RestoreResult, packed bool) *enginepb.RestoreResponse {
	resp := &enginepb.RestoreResponse{Target: res.Target, Messages: res.Messages}
	if res.Written != nil && writtenFits(res.Written) {
		if packed {
			resp.Written = writtenToPacked(res.Written)
		} else {
			resp.Written = indexToProto(res.Written)
		}
		resp.WrittenReported = true
	}
	return resp
}

// writtenToPacked is indexToProto for a host that reads a packed index:
// one byte string per stream instead of a message per file, which cost
// an allocation and protobuf's generic coding per file on both sides
// (6,551 files in an in-place undo of change small on venv-full).
func writtenToPacked(idx ParentIndex) []*enginepb.ParentStream {
	out := make([]*enginepb.ParentStream, 0, len(idx))
	for name, entries := range idx {
		n := 0
		for _, ie := range entries {
			if ie.Type == 0 {
				n++
			}
		}
		b := make([]byte, 0, binary.MaxVarintLen64+n*packedEntryGuess)
		b = binary.AppendUvarint(b, uint64(n))
		for path, ie := range entries {
			if ie.Type != 0 {
				// Files only, as indexToProto sends.
				continue
			}
			b = appendPackedEntry(b, path, ie)
		}
		out = append(out, &enginepb.ParentStream{Name: name, Packed: b})
	}
	return out
}

func restoreResultFromProto(p *enginepb.RestoreResponse) (*RestoreResult, error) {
	res := &RestoreResult{Target: p.GetTarget(), Messages: p.GetMessages()}
	if p.GetWrittenReported() {
		written, err := indexFromProto(p.GetWritten())
		if err != nil {
			return nil, protocolErrorf("written-file report: %v", err)
		}
		// A packed report could name directories and symlinks; it names
		// written files only.
		for _, ps := range p.GetWritten() {
			if len(ps.GetPacked()) == 0 {
				continue
			}
			for path, ie := range written[ps.GetName()] {
				if ie.Type != 0 {
					return nil, protocolErrorf("written-file report: %q is not a file", path)
				}
			}
		}
		res.Written = written
	}
	return res, nil
}

// writtenFits reports whether a report of written files stays well within
// MaxRestoreAnswerSize once encoded (an entry costs its path and at most
// ~40 bytes of numbers and framing).
func writtenFits(idx ParentIndex) bool {
	size := 0
	for name, entries := range idx {
		size += len(name) + 16
		for path := range entries {
			size += len(path) + 40
		}
	}
	return size <= MaxRestoreAnswerSize*3/4
}
