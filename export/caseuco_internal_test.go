package export

import (
	"testing"
	"time"
)

// CASE/UCO's times are xsd:dateTime literals too: a manifest time of year
// 0 is written -0001, as in DFXML, never the 0000 XSD has no room for.
func TestCASEDateTimeYearZero(t *testing.T) {
	for _, c := range []struct {
		t    time.Time
		want string
	}{
		{time.Date(0, 6, 1, 0, 0, 0, 0, time.UTC), "-0001-06-01T00:00:00Z"},
		{time.Date(2026, 12, 2, 9, 0, 0, 5, time.UTC), "2026-12-02T09:00:00.000000005Z"},
	} {
		if got := dateTime(c.t)["@value"]; got != c.want {
			t.Errorf("dateTime(%v) = %v, want %s", c.t, got, c.want)
		}
	}
}
