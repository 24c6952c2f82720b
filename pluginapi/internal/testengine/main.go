// Command testengine is the engine plugin of pluginapi's tests: one binary
// that behaves well or badly on purpose, chosen by the name it is run
// under, ptest-snap-engine-<mode> (the tests link it under each name):
//
//	good      captures a directory and restores it (a small real engine)
//	crash     exits in the middle of a capture or a restore
//	stopearly returns from Restore, with a result, after its first entry
//	failearly returns from Restore, with an error, after its first entry
//	          (both first wait, if the request's option "end-when" names a
//	          path, until that file exists: the test's cue that the host
//	          has more to send than the ring holds)
//	hang      blocks in Capture, Identify and Restore (once it has made the
//	          target), ignoring cancellation, until killed
//	stdout    prints to stdout before the handshake
//	mute      never completes the handshake
//	version   speaks app protocol version 2
//	dotdot    sends an entry path with ".."
//	abs       sends an absolute entry path
//	bigframe  sends a frame larger than MaxFrameSize
//	unsorted  sends entries out of order
//	longbody  sends more body bytes than the entry's size
//	hugemsg   sends a message larger than MaxMessageSize
//	badring   sends a shared-ring frame at a position the host did not expect
//
// If $PTEST_SNAP_TESTENGINE_MARKER is set, every mode first appends
// "<mode> <pid>" to that file, so a test can tell whether it ever ran.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/pypj/ptest-snap/pluginapi"
	enginepb "github.com/pypj/ptest-snap/pluginapi/proto"
)

func main() {
	mode := strings.TrimPrefix(filepath.Base(os.Args[0]), pluginapi.BinaryPrefix)
	if marker := os.Getenv("PTEST_SNAP_TESTENGINE_MARKER"); marker != "" {
		f, err := os.OpenFile(marker, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err == nil {
			fmt.Fprintf(f, "%s %d\n", mode, os.Getpid())
			f.Close()
		}
	}
	switch mode {
	case "good":
		pluginapi.Serve(&dirEngine{name: mode})
	case "crash":
		pluginapi.Serve(&dirEngine{name: mode, crashAfter: 50})
	case "hang":
		pluginapi.Serve(&dirEngine{name: mode, hang: true})
	case "stopearly":
		pluginapi.Serve(&dirEngine{name: mode, stopEarly: true})
	case "failearly":
		pluginapi.Serve(&dirEngine{name: mode, failEarly: true})
	case "stdout":
		fmt.Println("hello from an engine that talks too early")
		pluginapi.Serve(&dirEngine{name: mode})
	case "mute":
		for {
			time.Sleep(time.Hour)
		}
	case "version":
		serveRaw(mode, pluginapi.ProtocolVersion+1)
	case "tlscert":
		announceCert()
	case "tcp":
		serveTCP(mode)
	default:
		serveRaw(mode, pluginapi.ProtocolVersion)
	}
}

// dirEngine captures a directory tree and restores it into a new one.
type dirEngine struct {
	name       string
	crashAfter int
	hang       bool
	// stopEarly and failEarly end a restore after its first entry, with a
	// result or an error, leaving the rest unread.
	stopEarly, failEarly bool
}

// errFailEarly is the error the failearly mode's restore ends with.
var errFailEarly = errors.New("failearly: gave up after the first entry")

func (e *dirEngine) Info(context.Context) (pluginapi.Info, error) {
	return pluginapi.Info{Name: e.name, Version: "test", ProtocolVersion: pluginapi.ProtocolVersion,
		Capabilities: []pluginapi.Capability{pluginapi.CapRestoreNewTarget}}, nil
}

func (e *dirEngine) Identify(_ context.Context, target string, _ map[string]string) (pluginapi.Identity, error) {
	for e.hang {
		time.Sleep(time.Hour)
	}
	abs, err := filepath.Abs(target)
	if err != nil {
		return pluginapi.Identity{}, err
	}
	if _, err := os.Lstat(abs); err != nil {
		if os.IsNotExist(err) {
			return pluginapi.Identity{}, fmt.Errorf("identify %s: %w", target, pluginapi.ErrTargetNotFound)
		}
		return pluginapi.Identity{}, err
	}
	return pluginapi.Identity{EnvID: abs, Target: abs}, nil
}

func (e *dirEngine) Capture(ctx context.Context, req *pluginapi.CaptureRequest, w pluginapi.CaptureWriter) error {
	if _, err := os.Lstat(req.Target); os.IsNotExist(err) {
		return fmt.Errorf("capture %s: %w", req.Target, pluginapi.ErrTargetNotFound)
	}
	if err := w.WriteMetadata(ctx, pluginapi.Metadata{Version: 1, JSON: []byte(`{"engine":"test"}`)}); err != nil {
		return err
	}
	if e.hang {
		for {
			time.Sleep(time.Hour)
		}
	}
	if err := w.BeginStream(ctx, "rootfs"); err != nil {
		return err
	}
	n := 0
	return e.walk(ctx, req, w, req.Target, "", &n)
}

func (e *dirEngine) walk(ctx context.Context, req *pluginapi.CaptureRequest, w pluginapi.CaptureWriter, root, rel string, n *int) error {
	ents, err := os.ReadDir(filepath.Join(root, rel)) // sorted by name
	if err != nil {
		return err
	}
	for _, de := range ents {
		p := de.Name()
		if rel != "" {
			p = rel + "/" + p
		}
		full := filepath.Join(root, p)
		fi, err := os.Lstat(full)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		ent := &pluginapi.Entry{Path: p, Mode: uint32(fi.Mode().Perm()), UID: st.Uid, GID: st.Gid,
			MtimeNs: fi.ModTime().UnixNano(), CtimeNs: st.Ctim.Nano(), Inode: st.Ino}
		var body io.Reader
		switch {
		case fi.IsDir():
			ent.Type = pluginapi.TypeDir
		case fi.Mode()&os.ModeSymlink != 0:
			ent.Type = pluginapi.TypeSymlink
			if ent.LinkTarget, err = os.Readlink(full); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			ent.Type, ent.Size = pluginapi.TypeFile, fi.Size()
			if f, ok := w.(pluginapi.BodyFiller); ok && req.Options["fill"] == "1" && !req.IndexOnly {
				// Read the body straight into the writer's buffer.
				file, err := os.Open(full)
				if err != nil {
					return err
				}
				err = f.WriteEntryFill(ctx, ent, func(buf []byte) error {
					_, err := io.ReadFull(file, buf)
					return err
				})
				file.Close()
				if err != nil {
					return err
				}
				continue
			}
			if !req.IndexOnly {
				f, err := os.Open(full)
				if err != nil {
					return err
				}
				body = f
			}
		default:
			continue
		}
		if de.Name() == "gate" && req.Options["gate"] != "" {
			// The host must have what came before without the
			// capture ending: wait until it says so.
			if err := waitForFile(ctx, req.Options["gate"]); err != nil {
				return fmt.Errorf("the host did not get the entries before %q: %w", p, err)
			}
		}
		err = w.WriteEntry(ctx, ent, body)
		if f, ok := body.(*os.File); ok {
			f.Close()
		}
		if err != nil {
			return err
		}
		if *n++; e.crashAfter > 0 && *n == e.crashAfter {
			os.Exit(3)
		}
		if ent.Type == pluginapi.TypeDir {
			if err := e.walk(ctx, req, w, root, p, n); err != nil {
				return err
			}
		}
	}
	return nil
}

func (e *dirEngine) Restore(ctx context.Context, req *pluginapi.RestoreRequest, r pluginapi.RestoreReader) (*pluginapi.RestoreResult, error) {
	if _, err := os.Lstat(req.Target); err == nil {
		return nil, fmt.Errorf("restore to %s: %w", req.Target, pluginapi.ErrTargetExists)
	}
	if err := os.Mkdir(req.Target, 0o755); err != nil {
		return nil, err
	}
	for e.hang {
		time.Sleep(time.Hour)
	}
	for {
		_, ent, body, err := r.Next(ctx)
		if e.crashAfter > 0 && ent != nil && ent.Type == pluginapi.TypeFile {
			os.Exit(3)
		}
		if err == io.EOF {
			return &pluginapi.RestoreResult{Target: req.Target, Messages: []string{"restored by " + e.name}}, nil
		}
		if err != nil {
			return nil, err
		}
		if e.stopEarly || e.failEarly {
			if err := waitForFile(ctx, req.Options["end-when"]); err != nil {
				return nil, err
			}
		}
		switch {
		case e.stopEarly:
			return &pluginapi.RestoreResult{Target: req.Target, Messages: []string{"stopped early after " + ent.Path}}, nil
		case e.failEarly:
			return nil, errFailEarly
		}
		full := filepath.Join(req.Target, filepath.FromSlash(ent.Path))
		switch ent.Type {
		case pluginapi.TypeDir:
			err = os.Mkdir(full, os.FileMode(ent.Mode))
		case pluginapi.TypeSymlink:
			err = os.Symlink(ent.LinkTarget, full)
		case pluginapi.TypeFile:
			var f *os.File
			if f, err = os.OpenFile(full, os.O_WRONLY|os.O_CREATE|os.O_EXCL, os.FileMode(ent.Mode)); err == nil {
				if body != nil {
					_, err = io.Copy(f, body)
				}
				if cerr := f.Close(); err == nil {
					err = cerr
				}
			}
		}
		if err != nil {
			return nil, err
		}
	}
}

// serveRaw serves the Engine service written against the generated code,
// not the SDK, as an engine in another language would, to send what the
// SDK would refuse.
// announceCert writes a handshake line that announces a TLS certificate,
// as an engine written for AutoMTLS hosts does, and waits.
func announceCert() {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	fmt.Printf("1|%d|unix|%s|grpc|%s\n", pluginapi.ProtocolVersion, filepath.Join(os.TempDir(), "no-such.sock"), base64.RawStdEncoding.EncodeToString(der))
	time.Sleep(time.Hour)
}

// serveTCP serves the engine over TCP on the loopback, as go-plugin does
// on Windows.
func serveTCP(mode string) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("plugin", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	enginepb.RegisterEngineServer(srv, &rawServer{mode: mode})
	fmt.Printf("1|%d|tcp|%s|grpc\n", pluginapi.ProtocolVersion, l.Addr())
	_ = srv.Serve(l)
}

func serveRaw(mode string, version uint) {
	hs := pluginapi.HandshakeConfig()
	hs.ProtocolVersion = version
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: hs,
		Plugins:         plugin.PluginSet{"engine": &rawPlugin{mode: mode}},
		GRPCServer:      plugin.DefaultGRPCServer,
	})
}

type rawPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	mode string
}

func (p *rawPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	enginepb.RegisterEngineServer(s, &rawServer{mode: p.mode})
	return nil
}

func (p *rawPlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, fmt.Errorf("plugin side only")
}

type rawServer struct {
	enginepb.UnimplementedEngineServer
	mode string
}

func (s *rawServer) Info(context.Context, *enginepb.InfoRequest) (*enginepb.InfoResponse, error) {
	return &enginepb.InfoResponse{Name: s.mode, Version: "raw", ProtocolVersion: 1}, nil
}

func rec(r any) *enginepb.Record {
	switch v := r.(type) {
	case string:
		return &enginepb.Record{Kind: &enginepb.Record_BeginStream{BeginStream: v}}
	case *enginepb.Entry:
		return &enginepb.Record{Kind: &enginepb.Record_Entry{Entry: v}}
	case []byte:
		return &enginepb.Record{Kind: &enginepb.Record_Data{Data: v}}
	}
	panic("unknown record")
}

func file(path string, size int) *enginepb.Entry {
	return &enginepb.Entry{Path: path, Type: enginepb.EntryType_ENTRY_TYPE_FILE, Mode: 0o644, Size: int64(size)}
}

func (s *rawServer) Capture(_ *enginepb.CaptureRequest, stream grpc.ServerStreamingServer[enginepb.CaptureResponse]) error {
	dir := &enginepb.Entry{Path: "d", Type: enginepb.EntryType_ENTRY_TYPE_DIR, Mode: 0o755}
	recs := []*enginepb.Record{rec("rootfs"), rec(file("a", 1)), rec([]byte("A"))}
	switch s.mode {
	case "dotdot":
		recs = append(recs, rec(dir), rec(file("d/../../escape", 0)))
	case "abs":
		recs = append(recs, rec(file("/etc/passwd", 0)))
	case "bigframe":
		big := pluginapi.MaxFrameSize + 1
		recs = append(recs, rec(file("big", big)), rec(make([]byte, big)))
	case "unsorted":
		recs = append(recs, rec(file("c", 0)), rec(file("b", 0)))
	case "longbody":
		recs = append(recs, rec(file("b", 2)), rec([]byte("BBB")))
	case "hugemsg":
		n := 5 * pluginapi.MaxFrameSize
		recs = append(recs, rec(file("huge", n)))
		for range 5 {
			recs = append(recs, rec(make([]byte, pluginapi.MaxFrameSize)))
		}
	case "badring":
		recs = append(recs, rec(file("b", 2)),
			&enginepb.Record{Kind: &enginepb.Record_Shared{Shared: &enginepb.SharedFrame{Position: 4096, Length: 2}}})
	}
	if err := stream.Send(&enginepb.CaptureResponse{Metadata: &enginepb.Metadata{Version: 1, Json: []byte(`{}`)}}); err != nil {
		return err
	}
	return stream.Send(&enginepb.CaptureResponse{Records: recs})
}

// waitForFile waits until path exists (at once if path is empty).
func waitForFile(ctx context.Context, path string) error {
	for path != "" {
		if _, err := os.Lstat(path); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
	return nil
}
