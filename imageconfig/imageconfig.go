package imageconfig

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/amber-forensics/amber/internal/textsafe"
)

// MaxConfigSize bounds a config read from evidence.
const MaxConfigSize = 64 << 20

// Config is the part of an OCI/Docker image config an examiner reads.
type Config struct {
	Created      time.Time `json:"created"`
	Author       string    `json:"author"`
	Architecture string    `json:"architecture"`
	OS           string    `json:"os"`
	Config       Runtime   `json:"config"`
	RootFS       struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
	History []History `json:"history"`
}

// Runtime is the container configuration an image carries.
type Runtime struct {
	User         string              `json:"User"`
	ExposedPorts map[string]struct{} `json:"ExposedPorts"`
	Env          []string            `json:"Env"`
	Entrypoint   []string            `json:"Entrypoint"`
	Cmd          []string            `json:"Cmd"`
	Volumes      map[string]struct{} `json:"Volumes"`
	WorkingDir   string              `json:"WorkingDir"`
	Labels       map[string]string   `json:"Labels"`
	StopSignal   string              `json:"StopSignal"`
	Shell        []string            `json:"Shell"`
	OnBuild      []string            `json:"OnBuild"`
	Healthcheck  *Healthcheck        `json:"Healthcheck"`
}

// Healthcheck is a HEALTHCHECK instruction's result.
type Healthcheck struct {
	Test        []string      `json:"Test"`
	Interval    time.Duration `json:"Interval"`
	Timeout     time.Duration `json:"Timeout"`
	StartPeriod time.Duration `json:"StartPeriod"`
	Retries     int           `json:"Retries"`
}

// History is one build step as the config records it.
type History struct {
	Created    time.Time `json:"created"`
	CreatedBy  string    `json:"created_by"`
	Author     string    `json:"author"`
	Comment    string    `json:"comment"`
	EmptyLayer bool      `json:"empty_layer"`
}

// Parse decodes a config. Unknown fields are ignored (configs carry many).
func Parse(b []byte) (*Config, error) {
	if len(b) > MaxConfigSize {
		return nil, fmt.Errorf("image config of %d bytes is too large", len(b))
	}
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	return &c, nil
}

// Step is a history entry and the layer it made (-1: none).
type Step struct {
	History
	Layer int
}

// Steps pairs the history with the layers: each entry that is not an
// empty layer made the next layer. ok is false when the counts disagree
// (a config edited by hand, or squashed): then the layer numbers are
// shown as far as they go and the rest is -1.
func (c *Config) Steps() (steps []Step, ok bool) {
	n := 0
	for _, h := range c.History {
		s := Step{History: h, Layer: -1}
		if !h.EmptyLayer {
			if n < len(c.RootFS.DiffIDs) {
				s.Layer = n
			}
			n++
		}
		steps = append(steps, s)
	}
	return steps, n == len(c.RootFS.DiffIDs)
}

var (
	nopPrefix   = regexp.MustCompile(`^/bin/sh -c #\(nop\)\s*`)
	shPrefix    = regexp.MustCompile(`^/bin/sh -c `)
	argsPrefix  = regexp.MustCompile(`^\|(\d+) `)
	addCopyNop  = regexp.MustCompile(`^(ADD|COPY) (\S+) in (.*?)\s*$`)
	exposeMap   = regexp.MustCompile(`^EXPOSE map\[(.*)\]$`)
	buildkitEnd = " # buildkit"
)

// Instructions the Dockerfile reconstruction knows.
var keywords = []string{"FROM", "RUN", "COPY", "ADD", "ENV", "ARG", "CMD", "ENTRYPOINT", "USER", "WORKDIR", "LABEL",
	"EXPOSE", "VOLUME", "HEALTHCHECK", "SHELL", "STOPSIGNAL", "ONBUILD", "MAINTAINER"}

// Instruction renders one history entry as a Dockerfile line, from either
// the legacy builder's form ("/bin/sh -c #(nop)  CMD [...]", "/bin/sh -c
// cmd", "|2 A=1 B=2 /bin/sh -c cmd") or BuildKit's ("RUN /bin/sh -c cmd #
// buildkit", "COPY . /app # buildkit"). note says what could not be
// recovered; ok is false when the entry is not understood (it is then
// shown as a comment, never guessed).
//
// An instruction whose text holds a control character (the tab aside) or
// an invisible one is returned with ok false: written out, a line break
// would make its second line read as an instruction of its own (a history
// entry "echo hi\nUSER root" is not a USER instruction), and an escape
// sequence or a bidi override would show other text than the history's.
func Instruction(h History) (line, note string, ok bool) {
	line, note, ok = instruction(h)
	if ok && !textsafe.Clean(line) {
		if note != "" {
			note += "; "
		}
		return line, note + "the command holds control or invisible characters: not shown as an instruction", false
	}
	return line, note, ok
}

func instruction(h History) (line, note string, ok bool) {
	cb := strings.TrimSpace(h.CreatedBy)
	switch {
	case cb == "":
		if strings.HasPrefix(h.Comment, "Imported from") {
			return "ADD <imported> /", "the layer was made by docker import (" + h.Comment + "); its source is not recorded", true
		}
		return "", "no command recorded" + commentNote(h.Comment), false
	case strings.HasSuffix(cb, buildkitEnd):
		cb = strings.TrimSuffix(cb, buildkitEnd)
		if rest, ok := strings.CutPrefix(cb, "RUN "); ok {
			if args := argsPrefix.FindStringSubmatch(rest); args != nil {
				var n int
				fmt.Sscan(args[1], &n)
				rest, note = stripArgs(rest[len(args[0]):], n)
			}
			return "RUN " + strings.TrimPrefix(rest, "/bin/sh -c "), note, true
		}
		return normalize(cb)
	case nopPrefix.MatchString(cb):
		return normalize(nopPrefix.ReplaceAllString(cb, ""))
	}
	if args := argsPrefix.FindStringSubmatch(cb); args != nil {
		var n int
		fmt.Sscan(args[1], &n)
		cb, note = stripArgs(cb[len(args[0]):], n)
	}
	if shPrefix.MatchString(cb) {
		return "RUN " + shPrefix.ReplaceAllString(cb, ""), note, true
	}
	if kw, _, _ := strings.Cut(cb, " "); isKeyword(kw) {
		return normalize(cb)
	}
	// An exec-form RUN records the bare argv.
	return "", "unrecognized: " + cb, false
}

func commentNote(c string) string {
	if c == "" {
		return ""
	}
	return " (comment: " + c + ")"
}

// stripArgs removes n "KEY=value" build arguments from the front of s.
func stripArgs(s string, n int) (string, string) {
	var args []string
	for i := 0; i < n; i++ {
		s = strings.TrimLeft(s, " ")
		j := strings.IndexByte(s, ' ')
		if j < 0 {
			break
		}
		args = append(args, s[:j])
		s = s[j+1:]
	}
	return s, "built with ARG " + strings.Join(args, " ")
}

func isKeyword(k string) bool {
	for _, w := range keywords {
		if k == w {
			return true
		}
	}
	return false
}

func normalize(s string) (string, string, bool) {
	s = strings.TrimSpace(s)
	kw, rest, _ := strings.Cut(s, " ")
	if !isKeyword(kw) {
		return "", "unrecognized: " + s, false
	}
	rest = strings.TrimSpace(rest)
	switch kw {
	case "ADD", "COPY":
		if m := addCopyNop.FindStringSubmatch(s); m != nil {
			return m[1] + " " + m[2] + " " + m[3], "the source is recorded only as the content digest " + m[2], true
		}
	case "EXPOSE":
		if m := exposeMap.FindStringSubmatch(s); m != nil {
			ports := strings.Fields(strings.ReplaceAll(m[1], ":{}", ""))
			sort.Strings(ports)
			return "EXPOSE " + strings.Join(ports, " "), "", true
		}
	case "HEALTHCHECK":
		if strings.HasPrefix(rest, "&{") {
			return "HEALTHCHECK " + rest, "the builder recorded its internal form; see the config's Healthcheck", true
		}
	}
	return kw + " " + rest, "", true
}

// Dockerfile reconstructs the Dockerfile of an image from its history.
// Lines that cannot be recovered are comments saying so. What the history
// holds is evidence: every piece of it is written through textsafe.Escape,
// so that each comment and instruction stays one line of what it says.
func Dockerfile(c *Config) []byte {
	var b bytes.Buffer
	steps, counted := c.Steps()
	escaped := false
	esc := func(s string) string {
		e := textsafe.Escape(s)
		escaped = escaped || e != s
		return e
	}
	for _, s := range steps {
		line, note, ok := Instruction(s.History)
		where := "no layer"
		if s.Layer >= 0 {
			where = fmt.Sprintf("layer %d", s.Layer)
		}
		created := ""
		if !s.Created.IsZero() {
			created = ", " + s.Created.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(&b, "# %s%s", where, created)
		if note != "" {
			fmt.Fprintf(&b, "; %s", esc(note))
		}
		b.WriteByte('\n')
		if !ok {
			b.WriteString("# (not recoverable)")
			if line != "" {
				b.WriteString(" " + esc(line))
			}
			b.WriteByte('\n')
			continue
		}
		b.WriteString(esc(line) + "\n")
	}
	var head bytes.Buffer
	head.WriteString("# Reconstructed by amber from the image config's history; not the original file.\n")
	head.WriteString("# The base image's name is not recorded: its own steps are included below.\n")
	if !counted {
		fmt.Fprintf(&head, "# The history names %d layers, the config has %d: layer numbers below are uncertain.\n", countLayers(steps), len(c.RootFS.DiffIDs))
	}
	if escaped {
		head.WriteString("# Text holding control or invisible characters is shown quoted, Go-style (\"a\\nb\", \"\\x1b\", \"\\u202e\"); amber dockerfile --json has it exact.\n")
	}
	head.WriteString("FROM scratch\n")
	head.Write(b.Bytes())
	return head.Bytes()
}

func countLayers(steps []Step) int {
	n := 0
	for _, s := range steps {
		if !s.EmptyLayer {
			n++
		}
	}
	return n
}

// HistoryText renders the history as `docker history --no-trunc` does,
// newest first, with the layer each step made and that layer's size.
//
// A negative size marks a layer whose bytes the source did not hold.
func HistoryText(c *Config, layerSizes []int64) []byte {
	var b bytes.Buffer
	steps, _ := c.Steps()
	fmt.Fprintf(&b, "%-6s %-20s %12s  %s\n", "LAYER", "CREATED", "SIZE", "CREATED BY / COMMENT")
	for i := len(steps) - 1; i >= 0; i-- {
		s := steps[i]
		layer, size := "-", "0"
		if s.Layer >= 0 {
			layer = fmt.Sprint(s.Layer)
			if s.Layer < len(layerSizes) {
				size = fmt.Sprint(layerSizes[s.Layer])
				if layerSizes[s.Layer] < 0 {
					size = "not-present" // a foreign layer the source left out
				}
			}
		}
		created := "-"
		if !s.Created.IsZero() {
			created = s.Created.UTC().Format(time.RFC3339)
		}
		by := textsafe.Escape(s.CreatedBy)
		if s.Comment != "" {
			by += "   # " + textsafe.Escape(s.Comment)
		}
		fmt.Fprintf(&b, "%-6s %-20s %12s  %s\n", layer, created, size, by)
	}
	return b.Bytes()
}
