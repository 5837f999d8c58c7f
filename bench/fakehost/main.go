// Command fakehost writes a synthetic Docker data root for the benchmark
// of amber host: N containers and M images with the files Docker 20.10
// keeps for each (config.v2.json, hostconfig.json; the image config in
// imagedb, its references in repositories.json, the layer chain in
// layerdb), and no layer content: amber host reads none.
//
//	go run ./bench/fakehost -o DIR -containers 1000 -images 5000
//
// DIR/var/lib/docker is the data root (amber host DIR).
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

func main() {
	out := flag.String("o", "", "the host root to write (must not exist)")
	nc := flag.Int("containers", 1000, "containers")
	ni := flag.Int("images", 5000, "images")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "fakehost: -o DIR is required")
		os.Exit(2)
	}
	if err := write(*out, *nc, *ni); err != nil {
		fmt.Fprintln(os.Stderr, "fakehost:", err)
		os.Exit(1)
	}
}

func sum(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }

func write(root string, nc, ni int) error {
	if _, err := os.Stat(root); err == nil {
		return fmt.Errorf("%s exists", root)
	}
	dr := filepath.Join(root, "var/lib/docker")
	img := filepath.Join(dr, "image/overlay2")
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	file := func(p string, b []byte) {
		must(os.MkdirAll(filepath.Dir(p), 0o700))
		must(os.WriteFile(p, b, 0o600))
	}
	// One layer chain of three layers, shared by every image.
	var diffIDs []string
	chain := ""
	for i := 0; i < 3; i++ {
		d := "sha256:" + sum([]byte(fmt.Sprint("layer", i)))
		diffIDs = append(diffIDs, d)
		if chain == "" {
			chain = d
		} else {
			chain = "sha256:" + sum([]byte(chain+" "+d))
		}
		ld := filepath.Join(img, "layerdb/sha256", chain[7:])
		file(filepath.Join(ld, "diff"), []byte(d))
		file(filepath.Join(ld, "size"), []byte(fmt.Sprint(10<<20*(i+1))))
		file(filepath.Join(ld, "cache-id"), []byte(sum([]byte(chain))))
	}
	created := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	repos := map[string]map[string]string{}
	var ids []string
	for i := 0; i < ni; i++ {
		cfg, _ := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux",
			"created": created.Add(time.Duration(i) * time.Minute).Format(time.RFC3339Nano),
			"config":  map[string]any{"Cmd": []string{"/bin/sh"}, "Labels": map[string]string{"n": fmt.Sprint(i)}},
			"rootfs":  map[string]any{"type": "layers", "diff_ids": diffIDs}})
		id := sum(cfg)
		ids = append(ids, id)
		file(filepath.Join(img, "imagedb/content/sha256", id), cfg)
		name := fmt.Sprintf("registry.example/team/app%d", i)
		repos[name] = map[string]string{name + ":v1": "sha256:" + id}
	}
	rb, _ := json.Marshal(map[string]any{"Repositories": repos})
	file(filepath.Join(img, "repositories.json"), rb)
	for i := 0; i < nc; i++ {
		id := sum([]byte(fmt.Sprint("container", i)))
		t := created.Add(time.Duration(i) * time.Second).Format(time.RFC3339Nano)
		state := map[string]any{"Running": i%3 == 0, "Paused": false, "Restarting": false, "Dead": false, "Pid": 0, "ExitCode": 0,
			"StartedAt": t, "FinishedAt": "0001-01-01T00:00:00Z"}
		cfg, _ := json.Marshal(map[string]any{"ID": id, "Name": fmt.Sprintf("/web-%d", i), "Created": t, "Image": "sha256:" + ids[i%len(ids)],
			"Driver": "overlay2", "State": state, "LogPath": filepath.Join("/var/lib/docker/containers", id, id+"-json.log"),
			"Config": map[string]any{"Image": fmt.Sprintf("registry.example/team/app%d:v1", i%len(ids)), "Tty": false,
				"Labels": map[string]string{"io.kubernetes.pod.namespace": "default", "io.kubernetes.pod.name": fmt.Sprintf("web-%d", i)}},
			"MountPoints": map[string]any{}})
		cd := filepath.Join(dr, "containers", id)
		file(filepath.Join(cd, "config.v2.json"), cfg)
		file(filepath.Join(cd, "hostconfig.json"), []byte(`{"LogConfig":{"Type":"json-file","Config":{}}}`))
		md := filepath.Join(img, "layerdb/mounts", id)
		file(filepath.Join(md, "mount-id"), []byte(sum([]byte(id))))
		file(filepath.Join(md, "parent"), []byte(chain))
	}
	return nil
}
