// Command server is Corral's Go-side ttrpc interop server: a ttrpc server built with
// Debian's Go ttrpc 1.1.1 and containerd 1.6's own Go types, with the same peer-credential
// check containerd's shim uses (UnixSocketRequireSameUser). Corral's Rust clients call it.
//
// Usage: server -socket PATH
//
// Prints {"call":"ready"} on stdout once listening, then one JSON line per Events.Forward
// call; serves until SIGTERM/SIGINT, then closes and exits 0. See ../../../README.md.
package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	namespacesapi "github.com/containerd/containerd/api/services/namespaces/v1"
	eventsapi "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	versionapi "github.com/containerd/containerd/api/services/version/v1"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/ttrpc"
	ptypes "github.com/gogo/protobuf/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var stdoutMu sync.Mutex

// emit writes one JSON object as a single line on stdout (os.Stdout is unbuffered).
func emit(v interface{}) {
	b, err := json.Marshal(v)
	if err != nil {
		fmt.Fprintf(os.Stderr, "server: json: %v\n", err)
		return
	}
	stdoutMu.Lock()
	defer stdoutMu.Unlock()
	os.Stdout.Write(append(b, '\n'))
}

type forwardLine struct {
	Call              string `json:"call"`
	Namespace         string `json:"namespace"`
	Topic             string `json:"topic"`
	TimestampUnixNano int64  `json:"timestamp_unix_nano"`
	TypeURL           string `json:"type_url"`
	ValueHex          string `json:"value_hex"`
	MDNamespace       string `json:"md_namespace"`
}

type eventsService struct{}

func (eventsService) Forward(ctx context.Context, req *eventsapi.ForwardRequest) (*ptypes.Empty, error) {
	line := forwardLine{Call: "forward"}
	if env := req.Envelope; env != nil {
		line.Namespace = env.Namespace
		line.Topic = env.Topic
		// An absent timestamp decodes to Go's zero time (year 1), whose UnixNano is
		// undefined; report it as 0, like the Unix epoch.
		if !env.Timestamp.IsZero() {
			line.TimestampUnixNano = env.Timestamp.UnixNano()
		}
		if env.Event != nil {
			line.TypeURL = env.Event.TypeUrl
			line.ValueHex = hex.EncodeToString(env.Event.Value)
		}
	}
	if v, ok := ttrpc.GetMetadataValue(ctx, namespaces.TTRPCHeader); ok {
		line.MDNamespace = v
	}
	emit(line)
	return &ptypes.Empty{}, nil
}

func registerVersion(s *ttrpc.Server) {
	s.Register("containerd.services.version.v1.Version", map[string]ttrpc.Method{
		"Version": func(ctx context.Context, unmarshal func(interface{}) error) (interface{}, error) {
			var req ptypes.Empty
			if err := unmarshal(&req); err != nil {
				return nil, err
			}
			return &versionapi.VersionResponse{Version: "go-ttrpc", Revision: "1.1.1"}, nil
		},
	})
}

func registerNamespaces(s *ttrpc.Server) {
	s.Register("containerd.services.namespaces.v1.Namespaces", map[string]ttrpc.Method{
		"Get": func(ctx context.Context, unmarshal func(interface{}) error) (interface{}, error) {
			var req namespacesapi.GetNamespaceRequest
			if err := unmarshal(&req); err != nil {
				return nil, err
			}
			// What containerd's errdefs.ToGRPC(fmt.Errorf("namespace %q: %w", name,
			// errdefs.ErrNotFound)) produces, without ToGRPC's use of the message as a
			// format string.
			return nil, status.Error(codes.NotFound, fmt.Sprintf("namespace %q: not found", req.Name))
		},
	})
}

func main() {
	socket := flag.String("socket", "", "path of the unix socket to listen on (a unix:// prefix is accepted)")
	flag.Parse()
	if *socket == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: server -socket PATH")
		os.Exit(2)
	}
	path := strings.TrimPrefix(*socket, "unix://")

	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(os.Stderr, "server: remove stale socket: %v\n", err)
		os.Exit(1)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "server: listen: %v\n", err)
		os.Exit(1)
	}

	s, err := ttrpc.NewServer(ttrpc.WithServerHandshaker(ttrpc.UnixSocketRequireSameUser()))
	if err != nil {
		fmt.Fprintf(os.Stderr, "server: new server: %v\n", err)
		os.Exit(1)
	}
	eventsapi.RegisterEventsService(s, eventsService{})
	registerVersion(s)
	registerNamespaces(s)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	served := make(chan error, 1)
	go func() { served <- s.Serve(context.Background(), l) }()
	emit(map[string]string{"call": "ready"})

	select {
	case <-sigs:
		s.Close()
		os.Remove(path)
		os.Exit(0)
	case err := <-served:
		os.Remove(path)
		fmt.Fprintf(os.Stderr, "server: serve: %v\n", err)
		os.Exit(1)
	}
}
