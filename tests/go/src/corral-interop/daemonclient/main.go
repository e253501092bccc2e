// Command daemonclient is Corral's Go-side interop client for corrald: it calls corrald's
// namespaces, containers and leases services over ttrpc with Debian's Go ttrpc 1.1.1 and
// containerd 1.6's own Go message types, the way containerd 1.6 does (namespace set with
// namespaces.WithNamespace, context deadline on every call).
//
// Usage: daemonclient -socket PATH -namespace NS
//
// Each passed check prints "ok <check>" on stdout; a known, tolerated difference from
// containerd's answer prints "note <check>: <details>" on stdout. The first failed check prints
// "FAIL <check>: <details>" on stderr and exits 1. Exit 0 when all checks pass; exit 2 on a
// usage error. See ../../../README.md for the contract.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	leasesapi "github.com/containerd/containerd/api/services/leases/v1"
	namespacesapi "github.com/containerd/containerd/api/services/namespaces/v1"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/ttrpc"
	ptypes "github.com/gogo/protobuf/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	namespacesService = "containerd.services.namespaces.v1.Namespaces"
	containersService = "containerd.services.containers.v1.Containers"
	leasesService     = "containerd.services.leases.v1.Leases"
	callTimeout       = 5 * time.Second
	specTypeURL       = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
	runtimeName       = "io.containerd.runc.v2"
	extraNamespace    = "interop-extra"
	leaseID           = "interop-lease"
	contentDigest     = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)

var specJSON = []byte(`{"ociVersion":"1.0.2","process":{"args":["/bin/true"],"cwd":"/"},"root":{"path":"rootfs"}}`)

type checkFailed struct{ msg string }

func failf(format string, args ...interface{}) error {
	return &checkFailed{msg: fmt.Sprintf(format, args...)}
}

func (e *checkFailed) Error() string { return e.msg }

// runner holds the connection and the namespace; call sends one request with the namespace
// metadata (unless ns is "") and a 5 s deadline.
type runner struct {
	c  *ttrpc.Client
	ns string
}

func (r *runner) callIn(ns, service, method string, req, resp interface{}) error {
	ctx := context.Background()
	if ns != "" {
		ctx = namespaces.WithNamespace(ctx, ns)
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	return r.c.Call(ctx, service, method, req, resp)
}

func (r *runner) call(service, method string, req, resp interface{}) error {
	return r.callIn(r.ns, service, method, req, resp)
}

// expectCode checks that err is a status with the wanted code and (if not "") message.
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
		return failf("code %s as expected, but message %q, containerd says %q", want, st.Message(), wantMsg)
	}
	return nil
}

func labelsEqual(got, want map[string]string) bool {
	if len(got) == 0 && len(want) == 0 {
		return true
	}
	return reflect.DeepEqual(got, want)
}

func spec() *ptypes.Any {
	return &ptypes.Any{TypeUrl: specTypeURL, Value: specJSON}
}

func newContainer(id string, labels map[string]string) containersapi.Container {
	return containersapi.Container{
		ID:      id,
		Labels:  labels,
		Image:   "docker.io/library/busybox:latest",
		Runtime: &containersapi.Container_Runtime{Name: runtimeName},
		Spec:    spec(),
	}
}

// sameContainer compares what was sent with what came back (not the timestamps).
func sameContainer(got, want containersapi.Container) error {
	if got.ID != want.ID {
		return failf("id %q, want %q", got.ID, want.ID)
	}
	if !labelsEqual(got.Labels, want.Labels) {
		return failf("container %q: labels %v, want %v", want.ID, got.Labels, want.Labels)
	}
	if got.Image != want.Image {
		return failf("container %q: image %q, want %q", want.ID, got.Image, want.Image)
	}
	if got.Runtime == nil || got.Runtime.Name != runtimeName {
		return failf("container %q: runtime %v, want name %q", want.ID, got.Runtime, runtimeName)
	}
	if got.Spec == nil || got.Spec.TypeUrl != specTypeURL || string(got.Spec.Value) != string(specJSON) {
		return failf("container %q: spec %v, want type_url %q and the JSON sent", want.ID, got.Spec, specTypeURL)
	}
	return nil
}

func (r *runner) namespacesCRUD() error {
	sent := namespacesapi.Namespace{Name: extraNamespace, Labels: map[string]string{"site": "lab"}}
	var cr namespacesapi.CreateNamespaceResponse
	if err := r.call(namespacesService, "Create", &namespacesapi.CreateNamespaceRequest{Namespace: sent}, &cr); err != nil {
		return failf("Create %q: %v", extraNamespace, err)
	}
	if cr.Namespace.Name != sent.Name || !labelsEqual(cr.Namespace.Labels, sent.Labels) {
		return failf("Create returned %v, want %v", cr.Namespace, sent)
	}
	var gr namespacesapi.GetNamespaceResponse
	if err := r.call(namespacesService, "Get", &namespacesapi.GetNamespaceRequest{Name: extraNamespace}, &gr); err != nil {
		return failf("Get %q: %v", extraNamespace, err)
	}
	if gr.Namespace.Name != sent.Name || !labelsEqual(gr.Namespace.Labels, sent.Labels) {
		return failf("Get returned %v, want %v", gr.Namespace, sent)
	}
	var lr namespacesapi.ListNamespacesResponse
	if err := r.call(namespacesService, "List", &namespacesapi.ListNamespacesRequest{}, &lr); err != nil {
		return failf("List: %v", err)
	}
	found := false
	for _, n := range lr.Namespaces {
		found = found || n.Name == extraNamespace
	}
	if !found {
		return failf("List did not return %q: %v", extraNamespace, lr.Namespaces)
	}
	if err := r.call(namespacesService, "Delete", &namespacesapi.DeleteNamespaceRequest{Name: extraNamespace}, &ptypes.Empty{}); err != nil {
		return failf("Delete %q: %v", extraNamespace, err)
	}
	err := r.call(namespacesService, "Get", &namespacesapi.GetNamespaceRequest{Name: extraNamespace}, &gr)
	if e := expectCode(err, codes.NotFound, fmt.Sprintf("namespace %q: not found", extraNamespace)); e != nil {
		return failf("Get after Delete: %v", e)
	}
	return nil
}

func (r *runner) namespaceGetMissing() error {
	var gr namespacesapi.GetNamespaceResponse
	err := r.call(namespacesService, "Get", &namespacesapi.GetNamespaceRequest{Name: "missing"}, &gr)
	return expectCode(err, codes.NotFound, `namespace "missing": not found`)
}

func (r *runner) containersCreateGet() error {
	for _, c := range []containersapi.Container{
		newContainer("web1", map[string]string{"app": "web", "tier": "front"}),
		newContainer("db1", map[string]string{"app": "db"}),
	} {
		var cr containersapi.CreateContainerResponse
		if err := r.call(containersService, "Create", &containersapi.CreateContainerRequest{Container: c}, &cr); err != nil {
			return failf("Create %q: %v", c.ID, err)
		}
		if err := sameContainer(cr.Container, c); err != nil {
			return failf("Create returned: %v", err)
		}
		if cr.Container.CreatedAt.IsZero() || cr.Container.UpdatedAt.IsZero() {
			return failf("Create %q: created_at %v updated_at %v, want both set", c.ID, cr.Container.CreatedAt, cr.Container.UpdatedAt)
		}
		var gr containersapi.GetContainerResponse
		if err := r.call(containersService, "Get", &containersapi.GetContainerRequest{ID: c.ID}, &gr); err != nil {
			return failf("Get %q: %v", c.ID, err)
		}
		if err := sameContainer(gr.Container, c); err != nil {
			return failf("Get returned: %v", err)
		}
		if !gr.Container.CreatedAt.Equal(cr.Container.CreatedAt) {
			return failf("Get %q: created_at %v, Create said %v", c.ID, gr.Container.CreatedAt, cr.Container.CreatedAt)
		}
	}
	return nil
}

func ids(cs []containersapi.Container) []string {
	out := []string{}
	for _, c := range cs {
		out = append(out, c.ID)
	}
	sort.Strings(out)
	return out
}

func (r *runner) containersList() error {
	var lr containersapi.ListContainersResponse
	if err := r.call(containersService, "List", &containersapi.ListContainersRequest{}, &lr); err != nil {
		return failf("List: %v", err)
	}
	if got := ids(lr.Containers); !reflect.DeepEqual(got, []string{"db1", "web1"}) {
		return failf("List returned %v, want [db1 web1]", got)
	}
	lr = containersapi.ListContainersResponse{}
	filter := `labels."app"==web`
	if err := r.call(containersService, "List", &containersapi.ListContainersRequest{Filters: []string{filter}}, &lr); err != nil {
		return failf("List %s: %v", filter, err)
	}
	if got := ids(lr.Containers); !reflect.DeepEqual(got, []string{"web1"}) {
		return failf("List %s returned %v, want [web1]", filter, got)
	}
	return nil
}

func (r *runner) containersUpdate() error {
	var gr containersapi.GetContainerResponse
	if err := r.call(containersService, "Get", &containersapi.GetContainerRequest{ID: "web1"}, &gr); err != nil {
		return failf("Get web1: %v", err)
	}
	before := gr.Container
	upd := newContainer("web1", map[string]string{"app": "web", "env": "prod"})
	upd.Image = "ignored/by/the/mask:latest"
	req := containersapi.UpdateContainerRequest{Container: upd, UpdateMask: &ptypes.FieldMask{Paths: []string{"labels"}}}
	var ur containersapi.UpdateContainerResponse
	if err := r.call(containersService, "Update", &req, &ur); err != nil {
		return failf("Update web1 (mask labels): %v", err)
	}
	want := map[string]string{"app": "web", "env": "prod"}
	if !labelsEqual(ur.Container.Labels, want) {
		return failf("Update returned labels %v, want %v (mask labels replaces all labels)", ur.Container.Labels, want)
	}
	if ur.Container.Image != before.Image {
		return failf("Update changed image to %q though the mask is labels only (was %q)", ur.Container.Image, before.Image)
	}
	if ur.Container.UpdatedAt.Before(before.UpdatedAt) || !ur.Container.CreatedAt.Equal(before.CreatedAt) {
		return failf("Update timestamps: created_at %v (was %v), updated_at %v (was %v)", ur.Container.CreatedAt, before.CreatedAt, ur.Container.UpdatedAt, before.UpdatedAt)
	}
	gr = containersapi.GetContainerResponse{}
	if err := r.call(containersService, "Get", &containersapi.GetContainerRequest{ID: "web1"}, &gr); err != nil {
		return failf("Get web1 after Update: %v", err)
	}
	if !labelsEqual(gr.Container.Labels, want) || gr.Container.Image != before.Image {
		return failf("Get after Update: labels %v image %q, want labels %v image %q", gr.Container.Labels, gr.Container.Image, want, before.Image)
	}
	return nil
}

func (r *runner) containersDuplicate() error {
	c := newContainer("web1", map[string]string{"app": "web"})
	var cr containersapi.CreateContainerResponse
	err := r.call(containersService, "Create", &containersapi.CreateContainerRequest{Container: c}, &cr)
	if e := expectCode(err, codes.AlreadyExists, `container "web1": already exists`); e != nil {
		return failf("duplicate container Create: %v", e)
	}
	var nr namespacesapi.CreateNamespaceResponse
	err = r.call(namespacesService, "Create", &namespacesapi.CreateNamespaceRequest{Namespace: namespacesapi.Namespace{Name: r.ns}}, &nr)
	if e := expectCode(err, codes.AlreadyExists, fmt.Sprintf("namespace %q: already exists", r.ns)); e != nil {
		return failf("duplicate namespace Create: %v", e)
	}
	return nil
}

func (r *runner) noNamespace() error {
	var lr containersapi.ListContainersResponse
	err := r.callIn("", containersService, "List", &containersapi.ListContainersRequest{}, &lr)
	// containerd's message, as errdefs.ToGRPC sends it.
	if e := expectCode(err, codes.FailedPrecondition, "namespace is required: failed precondition"); e != nil {
		return failf("Containers.List without namespace: %v", e)
	}
	return nil
}

func (r *runner) containersDelete() error {
	for _, id := range []string{"web1", "db1"} {
		if err := r.call(containersService, "Delete", &containersapi.DeleteContainerRequest{ID: id}, &ptypes.Empty{}); err != nil {
			return failf("Delete %q: %v", id, err)
		}
	}
	var gr containersapi.GetContainerResponse
	err := r.call(containersService, "Get", &containersapi.GetContainerRequest{ID: "web1"}, &gr)
	if e := expectCode(err, codes.NotFound, fmt.Sprintf("container %q in namespace %q: not found", "web1", r.ns)); e != nil {
		return failf("Get after Delete: %v", e)
	}
	var lr containersapi.ListContainersResponse
	if err := r.call(containersService, "List", &containersapi.ListContainersRequest{}, &lr); err != nil {
		return failf("List after Delete: %v", err)
	}
	if len(lr.Containers) != 0 {
		return failf("List after Delete returned %v, want none", ids(lr.Containers))
	}
	return nil
}

func (r *runner) leases() error {
	labels := map[string]string{"containerd.io/gc.expire": "2099-01-01T00:00:00Z"}
	var cr leasesapi.CreateResponse
	if err := r.call(leasesService, "Create", &leasesapi.CreateRequest{ID: leaseID, Labels: labels}, &cr); err != nil {
		return failf("Create %q: %v", leaseID, err)
	}
	if cr.Lease == nil || cr.Lease.ID != leaseID || !labelsEqual(cr.Lease.Labels, labels) || cr.Lease.CreatedAt.IsZero() {
		return failf("Create returned %v, want id %q labels %v and created_at set", cr.Lease, leaseID, labels)
	}
	var lr leasesapi.ListResponse
	if err := r.call(leasesService, "List", &leasesapi.ListRequest{}, &lr); err != nil {
		return failf("List: %v", err)
	}
	if len(lr.Leases) != 1 || lr.Leases[0].ID != leaseID {
		return failf("List returned %v, want only %q", lr.Leases, leaseID)
	}
	res := leasesapi.Resource{ID: contentDigest, Type: "content"}
	if err := r.call(leasesService, "AddResource", &leasesapi.AddResourceRequest{ID: leaseID, Resource: res}, &ptypes.Empty{}); err != nil {
		return failf("AddResource %v: %v", res, err)
	}
	var rr leasesapi.ListResourcesResponse
	if err := r.call(leasesService, "ListResources", &leasesapi.ListResourcesRequest{ID: leaseID}, &rr); err != nil {
		return failf("ListResources: %v", err)
	}
	if len(rr.Resources) != 1 || rr.Resources[0].ID != res.ID || rr.Resources[0].Type != res.Type {
		return failf("ListResources returned %v, want [%v]", rr.Resources, res)
	}
	if err := r.call(leasesService, "Delete", &leasesapi.DeleteRequest{ID: leaseID}, &ptypes.Empty{}); err != nil {
		return failf("Delete %q: %v", leaseID, err)
	}
	lr = leasesapi.ListResponse{}
	if err := r.call(leasesService, "List", &leasesapi.ListRequest{}, &lr); err != nil {
		return failf("List after Delete: %v", err)
	}
	if len(lr.Leases) != 0 {
		return failf("List after Delete returned %v, want none", lr.Leases)
	}
	return nil
}

type check struct {
	name string
	run  func(r *runner) error
}

var checks = []check{
	{"namespaces-crud", (*runner).namespacesCRUD},
	{"namespaces-get-missing", (*runner).namespaceGetMissing},
	{"containers-create-get", (*runner).containersCreateGet},
	{"containers-list-filter", (*runner).containersList},
	{"containers-update-mask", (*runner).containersUpdate},
	{"duplicate-create", (*runner).containersDuplicate},
	{"no-namespace", (*runner).noNamespace},
	{"containers-delete", (*runner).containersDelete},
	{"leases", (*runner).leases},
}

func main() {
	socket := flag.String("socket", "", "path of corrald's ttrpc unix socket (a unix:// prefix is accepted)")
	ns := flag.String("namespace", "", "namespace sent as containerd-namespace-ttrpc metadata")
	flag.Parse()
	if *socket == "" || *ns == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: daemonclient -socket PATH -namespace NS")
		os.Exit(2)
	}
	conn, err := net.DialTimeout("unix", strings.TrimPrefix(*socket, "unix://"), callTimeout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL connect: %v\n", err)
		os.Exit(1)
	}
	client := ttrpc.NewClient(conn)
	defer client.Close()
	r := &runner{c: client, ns: *ns}
	for _, c := range checks {
		if err := c.run(r); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL %s: %v\n", c.name, err)
			client.Close()
			os.Exit(1)
		}
		fmt.Printf("ok %s\n", c.name)
	}
}
