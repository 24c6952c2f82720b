package core

// Progress reports how far a create or restore has come. Callbacks receive
// it from one goroutine, at most a few times per second plus once at the
// end (Done).
type Progress struct {
	// Op is "create" or "restore".
	Op string
	// Stream and Path name the entry being handled.
	Stream string
	Path   string
	// Files and Bytes count entries and file bytes handled so far;
	// BytesNew counts bytes the store did not have yet (create only).
	Files    int64
	Bytes    int64
	BytesNew int64
	// TotalFiles and TotalBytes are known on restore (from the snapshot's
	// stats). On a create with a parent they are an estimate, the parent's
	// size: raised to Files and Bytes when those pass it, and set to them
	// on the last report. Zero when unknown (a create without a parent).
	TotalFiles int64
	TotalBytes int64
	// Done is set on the last report.
	Done bool
}
