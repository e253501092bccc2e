// Command client is Corral's Go-side ttrpc interop client: it talks to a ttrpc server
// written in Rust using Debian's Go ttrpc 1.1.1 and containerd 1.6's own Go message types,
// exactly the way containerd 1.6 does (namespaces.WithNamespace, context deadline).
//
// Usage: client -socket PATH -namespace NS [-checks abcdef]
//
// Each passed check prints "ok <letter> <description>" on stdout. The first failed check
// prints "FAIL <letter>: <details>" on stderr and exits 1. Exit 0 when all selected checks
// pass; exit 2 on a usage error. See ../../../README.md for the contract.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"reflect"
	"strings"
	"sync"
	"time"

	namespacesapi "github.com/containerd/containerd/api/services/namespaces/v1"
	versionapi "github.com/containerd/containerd/api/services/version/v1"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/ttrpc"
	ptypes "github.com/gogo/protobuf/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	versionService    = "containerd.services.version.v1.Version"
	namespacesService = "containerd.services.namespaces.v1.Namespaces"
	callTimeout       = 5 * time.Second
	concurrentCalls   = 50
)

// checkFailed carries the details of a failed check.
type checkFailed struct{ msg string }

func failf(format string, args ...interface{}) error {
	return &checkFailed{msg: fmt.Sprintf(format, args...)}
}

func (e *checkFailed) Error() string { return e.msg }

type check struct {
	letter string
	desc   string
	run    func(c *ttrpc.Client, ns string) error
}

// callCtx is the context every call uses: the namespace set the way containerd 1.6 sets it
// (ttrpc metadata key containerd-namespace-ttrpc) and a 5 s deadline (sent as timeout_nano).
func callCtx(ns string) (context.Context, context.CancelFunc) {
	ctx := namespaces.WithNamespace(context.Background(), ns)
	return context.WithTimeout(ctx, callTimeout)
}

// expectCode checks that err is a gRPC status with the wanted code (and message, if not "").
func expectCode(err error, want codes.Code, wantMsg string) error {
	if err == nil {
		return failf("expected error with code %s, got success", want)
	}
	st, ok := status.FromError(err)
	if !ok {
		return failf("expected status error with code %s, got non-status error %T: %v", want, err, err)
	}
	if st.Code() != want {
		return failf("expected code %s (%d), got %s (%d) with message %q", want, int(want), st.Code(), int(st.Code()), st.Message())
	}
	if wantMsg != "" && st.Message() != wantMsg {
		return failf("expected message %q, got %q", wantMsg, st.Message())
	}
	return nil
}

func callVersion(c *ttrpc.Client, ns string) error {
	ctx, cancel := callCtx(ns)
	defer cancel()
	var resp versionapi.VersionResponse
	if err := c.Call(ctx, versionService, "Version", &ptypes.Empty{}, &resp); err != nil {
		return failf("Version call failed: %v", err)
	}
	if resp.Version != "corral-test" || resp.Revision != "r1" {
		return failf("expected version %q revision %q, got version %q revision %q", "corral-test", "r1", resp.Version, resp.Revision)
	}
	return nil
}

func checkGetMissing(c *ttrpc.Client, ns string) error {
	ctx, cancel := callCtx(ns)
	defer cancel()
	var resp namespacesapi.GetNamespaceResponse
	err := c.Call(ctx, namespacesService, "Get", &namespacesapi.GetNamespaceRequest{Name: "missing"}, &resp)
	return expectCode(err, codes.NotFound, `namespace "missing": not found`)
}

func checkCreate(c *ttrpc.Client, ns string) error {
	ctx, cancel := callCtx(ns)
	defer cancel()
	sent := namespacesapi.Namespace{Name: "edge", Labels: map[string]string{"site": "lab"}}
	var resp namespacesapi.CreateNamespaceResponse
	if err := c.Call(ctx, namespacesService, "Create", &namespacesapi.CreateNamespaceRequest{Namespace: sent}, &resp); err != nil {
		return failf("Create call failed: %v", err)
	}
	got := resp.Namespace
	if got.Name != sent.Name || !reflect.DeepEqual(got.Labels, sent.Labels) {
		return failf("expected namespace name %q labels %v, got name %q labels %v", sent.Name, sent.Labels, got.Name, got.Labels)
	}
	return nil
}

func checkList(c *ttrpc.Client, ns string) error {
	ctx, cancel := callCtx(ns)
	defer cancel()
	var resp namespacesapi.ListNamespacesResponse
	if err := c.Call(ctx, namespacesService, "List", &namespacesapi.ListNamespacesRequest{}, &resp); err != nil {
		return failf("List call failed: %v", err)
	}
	if len(resp.Namespaces) != 1 {
		return failf("expected exactly 1 namespace, got %d: %v", len(resp.Namespaces), resp.Namespaces)
	}
	got := resp.Namespaces[0]
	if got.Name != ns {
		return failf("expected namespace name %q (the metadata sent), got %q", ns, got.Name)
	}
	if t := got.Labels["timeout"]; t != "set" {
		return failf("expected label timeout=%q (timeout_nano sent), got %q (labels %v)", "set", t, got.Labels)
	}
	return nil
}

func checkUnimplemented(c *ttrpc.Client, ns string) error {
	ctx, cancel := callCtx(ns)
	defer cancel()
	err := c.Call(ctx, namespacesService, "NoSuchMethod", &ptypes.Empty{}, &ptypes.Empty{})
	if e := expectCode(err, codes.Unimplemented, ""); e != nil {
		return failf("unknown method %s/NoSuchMethod: %v", namespacesService, e)
	}
	err = c.Call(ctx, "no.such.Service", "X", &ptypes.Empty{}, &ptypes.Empty{})
	if e := expectCode(err, codes.Unimplemented, ""); e != nil {
		return failf("unknown service no.such.Service/X: %v", e)
	}
	return nil
}

func checkConcurrent(c *ttrpc.Client, ns string) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []string
	)
	for i := 0; i < concurrentCalls; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := callVersion(c, ns); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Sprintf("call %d: %v", i, err))
				mu.Unlock()
			}
		}(i)
	}
	wg.Wait()
	if len(errs) > 0 {
		return failf("%d of %d concurrent Version calls failed; first: %s", len(errs), concurrentCalls, errs[0])
	}
	return nil
}

var checks = []check{
	{"a", "Version returned corral-test r1", callVersion},
	{"b", "Get missing returned NotFound", checkGetMissing},
	{"c", "Create echoed the namespace", checkCreate},
	{"d", "List saw namespace metadata and timeout", checkList},
	{"e", "unknown method and service returned Unimplemented", checkUnimplemented},
	{"f", "50 concurrent Version calls succeeded", checkConcurrent},
}

func main() {
	socket := flag.String("socket", "", "path of the ttrpc unix socket (a unix:// prefix is accepted)")
	ns := flag.String("namespace", "", "namespace sent as containerd-namespace-ttrpc metadata")
	only := flag.String("checks", "abcdef", "letters of the checks to run, in order")
	flag.Parse()
	if *socket == "" || *ns == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: client -socket PATH -namespace NS [-checks abcdef]")
		os.Exit(2)
	}
	for _, l := range *only {
		known := false
		for _, c := range checks {
			known = known || c.letter == string(l)
		}
		if !known {
			fmt.Fprintf(os.Stderr, "usage: unknown check %q in -checks %q\n", l, *only)
			os.Exit(2)
		}
	}

	conn, err := net.DialTimeout("unix", strings.TrimPrefix(*socket, "unix://"), callTimeout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL connect: %v\n", err)
		os.Exit(1)
	}
	client := ttrpc.NewClient(conn)
	defer client.Close()

	for _, c := range checks {
		if !strings.Contains(*only, c.letter) {
			continue
		}
		if err := c.run(client, *ns); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL %s: %v\n", c.letter, err)
			client.Close()
			os.Exit(1)
		}
		fmt.Printf("ok %s %s\n", c.letter, c.desc)
	}
}
