package podman

import (
	"context"
	"encoding/json"
	"time"

	"github.com/amber-forensics/amber/snapshot/engine"
)

var _ engine.Lister = (*Storage)(nil)

// List lists the storage's containers (amber ps): each with the state the
// kernel shows (state), the image name podman recorded, and the pod from
// the kubelet's labels when its OCI spec carries them. A record that is not
// a container (an ID that is no ID) is left out.
func (s *Storage) List(ctx context.Context) ([]engine.Summary, error) {
	rs, err := s.containers()
	if err != nil {
		return nil, engine.Wrap(err, "listing containers")
	}
	out := make([]engine.Summary, 0, len(rs))
	for _, r := range rs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if !fullID.MatchString(r.ID) {
			continue
		}
		var meta struct {
			ImageName string `json:"image-name"`
		}
		json.Unmarshal([]byte(r.Metadata), &meta) // a bad record still lists, without its image name
		sm := engine.Summary{Runtime: "podman", ID: r.ID, Image: meta.ImageName}
		if len(r.Names) > 0 {
			sm.Name = r.Names[0]
		}
		st := s.state(r.ID)
		sm.State, sm.Pid = st.Status, st.Pid
		if t, err := time.Parse(time.RFC3339Nano, r.Created); err == nil {
			sm.Created = rfc3339(t)
		}
		if s.offline {
			// libpod's record has the start time too; its creation
			// time is the container's, the storage's its layer's.
			m, _ := s.loadLibpod()
			if c := m[r.ID]; c != nil {
				if c.Created != "" {
					sm.Created = c.Created
				}
				sm.Started = c.Started
			}
		}
		out = append(out, sm)
	}
	return out, nil
}
