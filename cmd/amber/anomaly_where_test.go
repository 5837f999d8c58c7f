package main

import (
	"testing"

	"github.com/amber-forensics/amber/manifest"
)

// TestAnomalyWhere: the ls summary and capture name what an anomaly is
// about by its artifact's kind (a container's were labelled images/NAME).
func TestAnomalyWhere(t *testing.T) {
	m := &manifest.Manifest{Artifacts: []manifest.Artifact{
		{Kind: manifest.KindImage, Name: "app_v1"}, {Kind: manifest.KindContainer, Name: "web"}, {Kind: manifest.KindArtifact, Name: "sbom"}}}
	for _, c := range []struct {
		an   manifest.Anomaly
		want string
	}{
		{manifest.Anomaly{Artifact: "web", Layer: 3}, "containers/web layer 3"},
		{manifest.Anomaly{Artifact: "app_v1", Layer: 0}, "images/app_v1 layer 0"},
		{manifest.Anomaly{Artifact: "sbom", Layer: -1}, "artifacts/sbom"},
		{manifest.Anomaly{Layer: -1}, "source"},
	} {
		if got := anomalyWhere(m, c.an); got != c.want {
			t.Errorf("anomalyWhere(%+v) = %q, want %q", c.an, got, c.want)
		}
	}
}
