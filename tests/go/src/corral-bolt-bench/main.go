// corral-bolt-bench: the reference for Corral's metadata benchmark. Go bbolt (Debian's
// golang-github-coreos-bbolt-dev, the bbolt containerd 1.6 links) doing what containerd 1.6's
// metadata store does with containers, in containerd's layout:
//
//	v1/version = varint(3)
//	v1/<ns>/containers/<id>/createdat, updatedat   time.MarshalBinary
//	                        image, snapshotter, snapshotKey
//	                        runtime/name
//	                        labels/<key> = <value>
//
// Usage: corral-bolt-bench -dir DIR [-single 1000] [-n 10000] [-lists 7] [-gets 1000]
// Prints one JSON object on stdout (figures in microseconds and bytes).
package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

const namespace = "default"

type container struct {
	ID          string
	Labels      map[string]string
	Image       string
	Runtime     string
	SnapshotKey string
	Snapshotter string
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

func record(i int) container {
	id := fmt.Sprintf("ctr-%05d", i)
	return container{
		ID:          id,
		Labels:      map[string]string{"app": "web-" + id, "io.cri-containerd.kind": "container"},
		Image:       "docker.io/library/busybox:latest",
		Runtime:     "io.containerd.runc.v2",
		SnapshotKey: id,
		Snapshotter: "overlayfs",
	}
}

func open(path string) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0644, nil)
	if err != nil {
		return nil, err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		v1, err := tx.CreateBucketIfNotExists([]byte("v1"))
		if err != nil {
			return err
		}
		if v1.Get([]byte("version")) != nil {
			return nil
		}
		buf := make([]byte, binary.MaxVarintLen64)
		return v1.Put([]byte("version"), buf[:binary.PutVarint(buf, 3)])
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// create does what containerd's containerStore.Create does inside its transaction.
func create(tx *bolt.Tx, c *container) error {
	v1 := tx.Bucket([]byte("v1"))
	ns, err := v1.CreateBucketIfNotExists([]byte(namespace))
	if err != nil {
		return err
	}
	cs, err := ns.CreateBucketIfNotExists([]byte("containers"))
	if err != nil {
		return err
	}
	b, err := cs.CreateBucket([]byte(c.ID))
	if err != nil {
		if err == bolt.ErrBucketExists {
			return fmt.Errorf("container %q: already exists", c.ID)
		}
		return err
	}
	now := time.Now().UTC()
	c.CreatedAt, c.UpdatedAt = now, now
	for _, kv := range []struct {
		k string
		t time.Time
	}{{"createdat", c.CreatedAt}, {"updatedat", c.UpdatedAt}} {
		raw, err := kv.t.MarshalBinary()
		if err != nil {
			return err
		}
		if err := b.Put([]byte(kv.k), raw); err != nil {
			return err
		}
	}
	for _, kv := range [][2]string{{"image", c.Image}, {"snapshotter", c.Snapshotter}, {"snapshotKey", c.SnapshotKey}} {
		if err := b.Put([]byte(kv[0]), []byte(kv[1])); err != nil {
			return err
		}
	}
	rt, err := b.CreateBucket([]byte("runtime"))
	if err != nil {
		return err
	}
	if err := rt.Put([]byte("name"), []byte(c.Runtime)); err != nil {
		return err
	}
	lb, err := b.CreateBucket([]byte("labels"))
	if err != nil {
		return err
	}
	for k, v := range c.Labels {
		if err := lb.Put([]byte(k), []byte(v)); err != nil {
			return err
		}
	}
	return nil
}

// read does what containerd's readContainer does: every field.
func read(id []byte, b *bolt.Bucket) (container, error) {
	c := container{ID: string(id)}
	err := b.ForEach(func(k, v []byte) error {
		switch string(k) {
		case "createdat":
			return c.CreatedAt.UnmarshalBinary(v)
		case "updatedat":
			return c.UpdatedAt.UnmarshalBinary(v)
		case "image":
			c.Image = string(v)
		case "snapshotter":
			c.Snapshotter = string(v)
		case "snapshotKey":
			c.SnapshotKey = string(v)
		case "runtime":
			rb := b.Bucket(k)
			if rb != nil {
				c.Runtime = string(rb.Get([]byte("name")))
			}
		case "labels":
			lb := b.Bucket(k)
			if lb != nil {
				c.Labels = map[string]string{}
				return lb.ForEach(func(k, v []byte) error {
					c.Labels[string(k)] = string(v)
					return nil
				})
			}
		}
		return nil
	})
	return c, err
}

func containers(tx *bolt.Tx) *bolt.Bucket {
	v1 := tx.Bucket([]byte("v1"))
	if v1 == nil {
		return nil
	}
	ns := v1.Bucket([]byte(namespace))
	if ns == nil {
		return nil
	}
	return ns.Bucket([]byte("containers"))
}

func micros(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

func percentile(sorted []float64, p float64) float64 {
	i := int(p*float64(len(sorted)) + 0.5)
	if i >= len(sorted) {
		i = len(sorted) - 1
	}
	if i > 0 {
		i--
	}
	return sorted[i]
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

func run(dir string, single, n, lists, gets int) (map[string]interface{}, error) {
	out := map[string]interface{}{}

	// 1. One transaction (with its fsyncs) per create.
	p1 := filepath.Join(dir, "single.db")
	db, err := open(p1)
	if err != nil {
		return nil, err
	}
	each := make([]float64, 0, single)
	for i := 0; i < single; i++ {
		c := record(i)
		start := time.Now()
		if err := db.Update(func(tx *bolt.Tx) error { return create(tx, &c) }); err != nil {
			return nil, err
		}
		each = append(each, micros(time.Since(start)))
	}
	db.Close()
	sort.Float64s(each)
	out["create_each_p50_us"] = percentile(each, 0.50)
	out["create_each_p99_us"] = percentile(each, 0.99)
	out["create_each_file_bytes"] = fileSize(p1)

	// 2. n creates in one transaction, on a fresh file.
	p2 := filepath.Join(dir, "bulk.db")
	db, err = open(p2)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	err = db.Update(func(tx *bolt.Tx) error {
		for i := 0; i < n; i++ {
			c := record(i)
			if err := create(tx, &c); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out["create_bulk_us"] = micros(time.Since(start))
	db.Close()
	out["bulk_file_bytes"] = fileSize(p2)

	// 3. List every container, every field, each list in its own read transaction.
	db, err = open(p2)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	listed := make([]float64, 0, lists)
	for r := 0; r < lists; r++ {
		var all []container
		start := time.Now()
		err := db.View(func(tx *bolt.Tx) error {
			cs := containers(tx)
			if cs == nil {
				return errors.New("no containers bucket")
			}
			return cs.ForEach(func(k, v []byte) error {
				b := cs.Bucket(k)
				if b == nil {
					return nil
				}
				c, err := read(k, b)
				if err != nil {
					return err
				}
				all = append(all, c)
				return nil
			})
		})
		if err != nil {
			return nil, err
		}
		listed = append(listed, micros(time.Since(start)))
		if len(all) != n || all[n-1].Runtime == "" || len(all[n-1].Labels) != 2 {
			return nil, fmt.Errorf("listed %d containers, want %d with every field", len(all), n)
		}
	}
	sort.Float64s(listed)
	out["list_min_us"] = listed[0]
	out["list_median_us"] = percentile(listed, 0.5)
	out["list_max_us"] = listed[len(listed)-1]

	// 4. Get one container (every field) in its own read transaction.
	got := make([]float64, 0, gets)
	for g := 0; g < gets; g++ {
		id := []byte(record((g * 7919) % n).ID)
		var c container
		start := time.Now()
		err := db.View(func(tx *bolt.Tx) error {
			cs := containers(tx)
			if cs == nil {
				return errors.New("no containers bucket")
			}
			b := cs.Bucket(id)
			if b == nil {
				return fmt.Errorf("container %q: not found", id)
			}
			var err error
			c, err = read(id, b)
			return err
		})
		if err != nil {
			return nil, err
		}
		got = append(got, micros(time.Since(start)))
		if c.Image == "" {
			return nil, errors.New("get returned an empty container")
		}
	}
	sort.Float64s(got)
	out["get_p50_us"] = percentile(got, 0.50)
	out["get_p99_us"] = percentile(got, 0.99)
	return out, nil
}

func main() {
	dir := flag.String("dir", "", "directory for the database files (required)")
	single := flag.Int("single", 1000, "creates, one transaction each")
	n := flag.Int("n", 10000, "creates in one transaction, then listed")
	lists := flag.Int("lists", 7, "repetitions of the list")
	gets := flag.Int("gets", 1000, "single gets")
	flag.Parse()
	if *dir == "" || *single < 1 || *n < 1 || *lists < 1 || *gets < 1 {
		flag.Usage()
		os.Exit(2)
	}
	out, err := run(*dir, *single, *n, *lists, *gets)
	if err != nil {
		fmt.Fprintln(os.Stderr, "corral-bolt-bench:", err)
		os.Exit(1)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		os.Exit(1)
	}
}
