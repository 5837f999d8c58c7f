package browse

import (
	"errors"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/charmbracelet/bubbles/textinput"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/extract"
	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/imageconfig"
	"github.com/amber-forensics/amber/layers"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/view"
)

// Options configure a browser.
type Options struct {
	// Start is where to begin, a view path (Model.start): an artifact,
	// a layer or stage of it, and a path there to unfold and select.
	Start string
	// ExtractDir is the directory e proposes (default ".").
	ExtractDir string
	// Diff renders a unified diff of two text files (labels, contents);
	// nil (or an empty result: no diff(1)) shows the line counts.
	Diff func(labelA, labelB string, a, b []byte) []byte
	// Extracted is called after e wrote VIEWPATH to target: the caller
	// records it in the custody log, as amber extract does.
	Extracted func(viewPath, target string, res *extract.Result) error
	// CountLimit: the A/M/D counts and wasted bytes of an artifact are
	// computed (in the background) when its layers hold at most this
	// many entries, else on request (key C). 0: 300,000.
	CountLimit int
}

// artInfo is one artifact of the archive as browsed.
type artInfo struct {
	a         *manifest.Artifact
	v         *view.View
	ixs       []*fileindex.Index
	createdBy []string
	// short is the instruction that made each layer (RUN ..., COPY ...)
	// when it can be recovered, else its created_by.
	short    []string
	entries  int
	reports  []layers.Report
	counting bool
	countErr error
	// memory is set on a container's process: the view directory of its
	// memory files (containers/NAME/memory/PID-COMM).
	memory string
	proc   *manifest.Process
}

// memberRows lists a directory of a container's own files.
func (a *artInfo) memberRows(dir, rel string) (lister, error) {
	p := dir
	if rel != "" {
		p += "/" + rel
	}
	ents, err := a.v.ReadDir(p)
	if err != nil {
		return nil, err
	}
	out := make(rowList, 0, len(ents))
	for _, e := range ents {
		r := strings.TrimPrefix(strings.TrimPrefix(e.Path, dir), "/")
		out = append(out, row{name: e.Name, rel: r, layer: -1, mark: markSame, view: e.Path,
			rec: fileindex.Record{Path: r, Type: e.Type, Mode: e.Mode, Size: e.Size, ModTime: e.ModTime}})
	}
	return out, nil
}

// leftRow is a line of the left pane: an artifact, one of its layers, or
// a process whose memory was taken.
type leftRow struct {
	art   *artInfo
	layer int // -1: the artifact's own line
}

type pane int

const (
	paneLeft pane = iota
	paneRight
)

// Model is the browser: a tea.Model.
type Model struct {
	v    *view.View
	opts Options
	arts []*artInfo
	left []leftRow

	w, h        int
	focus       pane
	lsel, ltop  int
	rsel, rtop  int
	stage       bool
	changesOnly bool
	tree        *tree
	treeKey     string

	// overlay, when set, covers the panes: content, diff, blame, help.
	overlay *overlay
	// prompt, when set, reads a filter or a destination.
	prompt     *textinput.Model
	promptKind string
	status     string
	quitting   bool
}

type overlay struct {
	title string
	lines []string
	top   int
}

// New reads the archive's manifest and the indexes of its artifacts'
// layers (each opened in place: nothing is walked).
func New(a *archive.Archive, opts Options) (*Model, error) {
	m := &Model{v: &view.View{A: a}, opts: opts, w: 80, h: 24}
	if m.opts.ExtractDir == "" {
		m.opts.ExtractDir = "."
	}
	if m.opts.CountLimit == 0 {
		m.opts.CountLimit = 300000
	}
	for i := range a.Manifest.Artifacts {
		art := &a.Manifest.Artifacts[i]
		if art.Kind != manifest.KindImage && art.Kind != manifest.KindContainer {
			continue
		}
		ai := &artInfo{a: art, v: m.v, createdBy: make([]string, len(art.Layers)), short: make([]string, len(art.Layers))}
		for _, l := range art.Layers {
			ix, err := a.Index(l.Digest)
			if err != nil {
				return nil, fmt.Errorf("%s/%s: layer %s: %w", art.Kind, art.Name, l.Digest.Short(), err)
			}
			ai.ixs = append(ai.ixs, ix)
			ai.entries += int(ix.Len())
		}
		if b, err := a.ReadEntry(manifest.BlobName(art.Config.Digest), imageconfig.MaxConfigSize); err == nil {
			if c, err := imageconfig.Parse(b); err == nil {
				steps, _ := c.Steps()
				for _, s := range steps {
					if s.Layer >= 0 && s.Layer < len(ai.createdBy) {
						ai.createdBy[s.Layer], ai.short[s.Layer] = s.CreatedBy, s.CreatedBy
						if line, _, ok := imageconfig.Instruction(s.History); ok {
							ai.short[s.Layer] = line
						}
					}
				}
			}
		}
		m.arts = append(m.arts, ai)
		m.left = append(m.left, leftRow{art: ai, layer: -1})
		for n := range art.Layers {
			m.left = append(m.left, leftRow{art: ai, layer: n})
		}
		if art.Container != nil {
			for k := range art.Container.Processes {
				p := &art.Container.Processes[k]
				mi := &artInfo{a: art, v: m.v, memory: "containers/" + art.Name + "/" + p.Dir, proc: p}
				m.left = append(m.left, leftRow{art: mi, layer: -1})
			}
		}
	}
	if len(m.arts) == 0 {
		return nil, fmt.Errorf("%w: the archive holds no image or container", view.ErrNotFound)
	}
	if err := m.start(opts.Start); err != nil {
		return nil, err
	}
	return m, nil
}

// start selects the artifact, layer or stage, and the path in it, that
// p (a view path) names: images/NAME[/layers/N|/stages/N|/rootfs][/PATH],
// containers/NAME[/changes|/rootfs|/pristine][/PATH].
func (m *Model) start(p string) error {
	p = strings.Trim(p, "/")
	// The first layer row by default (an image of a config alone has
	// none).
	m.lsel = min(1, len(m.left)-1)
	if p == "" {
		return nil
	}
	usage := fmt.Errorf("%w: %q: give images/NAME[/layers/N|/stages/N|/rootfs][/PATH] or containers/NAME[/changes|/rootfs|/pristine][/PATH]", view.ErrNotFound, p)
	c := strings.Split(p, "/")
	kind := map[string]string{"images": manifest.KindImage, "containers": manifest.KindContainer}[c[0]]
	if len(c) < 2 || kind == "" {
		return usage
	}
	for i, l := range m.left {
		if l.art.memory != "" || l.art.a.Kind != kind || l.art.a.Name != c[1] || l.layer < 0 {
			continue
		}
		nl := len(l.art.a.Layers)
		want, rest := 0, c[2:]
		if kind == manifest.KindContainer {
			want = nl - 1 // its changes
		}
		switch {
		case len(rest) == 0:
		case kind == manifest.KindImage && len(rest) >= 2 && (rest[0] == "layers" || rest[0] == "stages"):
			n, err := strconv.Atoi(rest[1])
			if err != nil || n < 0 || n >= nl || strconv.Itoa(n) != rest[1] {
				return fmt.Errorf("%w: %s (layers 0 to %d)", view.ErrNotFound, p, nl-1)
			}
			want, m.stage, rest = n, rest[0] == "stages", rest[2:]
		case rest[0] == "rootfs":
			want, m.stage, rest = nl-1, true, rest[1:]
		case kind == manifest.KindContainer && rest[0] == "changes":
			rest = rest[1:]
		case kind == manifest.KindContainer && rest[0] == "pristine" && nl >= 2:
			want, m.stage, rest = nl-2, true, rest[1:]
		default:
			return usage
		}
		m.lsel = i + want
		if len(rest) > 0 {
			m.focus = paneRight
			return m.reveal(strings.Join(rest, "/"))
		}
		return nil
	}
	return fmt.Errorf("%w: %s", view.ErrNotFound, p)
}

// reveal unfolds the directories above rel in the current tree and
// selects it.
func (m *Model) reveal(rel string) error {
	t := m.currentTree()
	if t == nil {
		return fmt.Errorf("%w: %s", view.ErrNotFound, rel)
	}
	d, row := t.root, -1 // row: d's own visible row (-1: the root)
	comps := strings.Split(rel, "/")
	for j, name := range comps {
		c := -1
		if l, ok := d.list.(*layerList); ok && l.idx == nil {
			// A layer's directory: its children are sorted, looked up
			// in the index (a million of them are not read one by one).
			if dir, ok := l.t.ix().Lookup(d.rel); ok {
				if k, ok := l.t.ix().Child(dir, name); ok && k >= l.first && int(k-l.first) < l.n {
					c = int(k - l.first)
				}
			}
		}
		for k := 0; c < 0 && k < d.list.Len(); k++ {
			if r, err := d.list.At(k); err == nil && r.name == name {
				c = k
				break
			}
		}
		if c < 0 {
			return fmt.Errorf("%w: %s is not in this layer or stage", view.ErrNotFound, safe(rel))
		}
		// Its visible row: after d's, the children before it and what
		// is unfolded below them.
		row += 1 + c
		for _, oc := range d.order {
			if oc < c {
				row += d.open[oc].total
			}
		}
		if j == len(comps)-1 {
			break
		}
		if _, open := d.open[c]; !open {
			if err := t.toggle(row); err != nil {
				return err
			}
		}
		sub, ok := d.open[c]
		if !ok {
			return fmt.Errorf("%w: %s: not a directory", view.ErrNotFound, safe(rel))
		}
		d = sub
	}
	m.rsel = row
	return nil
}

type countedMsg struct {
	art *artInfo
	r   []layers.Report
	err error
}

// count computes an artifact's per-layer report, as amber layers does.
func count(a *artInfo) tea.Cmd {
	a.counting = true
	return func() tea.Msg {
		r, err := layers.Reports(a.ixs)
		// Only the totals and the wasted paths are kept.
		for i := range r {
			var keep []layers.PathChange
			for _, c := range r[i].Changes {
				if c.Fate != "" && c.VisibleAs == "" && c.LinkTo == "" && c.Size > 0 {
					keep = append(keep, c)
				}
			}
			r[i].Changes = keep
		}
		return countedMsg{a, r, err}
	}
}

// Init starts counting what fits the limit.
func (m *Model) Init() tea.Cmd {
	var cmds []tea.Cmd
	for _, a := range m.arts {
		if a.entries <= m.opts.CountLimit {
			cmds = append(cmds, count(a))
		}
	}
	// One after the other: each count holds its artifact's changes.
	return tea.Sequence(cmds...)
}

// Update handles a key, a resize or a finished count.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.w, m.h = msg.Width, msg.Height
		return m, nil
	case countedMsg:
		msg.art.counting, msg.art.reports, msg.art.countErr = false, msg.r, msg.err
		if m.status == "counting..." {
			m.status = ""
		}
		return m, nil
	case tea.KeyMsg:
		if m.prompt != nil {
			return m.promptKey(msg)
		}
		if msg.String() == "ctrl+c" {
			m.quitting = true
			return m, tea.Quit
		}
		if m.overlay != nil {
			m.overlayKey(msg)
			return m, nil
		}
		return m.key(msg)
	}
	return m, nil
}

func (m *Model) bodyHeight() int { return max(1, m.h-4) }

func (m *Model) key(msg tea.KeyMsg) (tea.Model, tea.Cmd) {
	m.status = ""
	k := msg.String()
	switch k {
	case "q":
		m.quitting = true
		return m, tea.Quit
	case "tab", "shift+tab":
		m.focus = 1 - m.focus
		return m, nil
	case "?":
		m.overlay = &overlay{title: "keys", lines: strings.Split(helpText, "\n")}
		return m, nil
	case "s":
		m.stage = !m.stage
		m.rsel, m.rtop = 0, 0
		return m, nil
	case "c":
		m.changesOnly = !m.changesOnly
		m.rsel, m.rtop = 0, 0
		return m, nil
	case "C":
		if a := m.cur().art; a.memory == "" && a.reports == nil && !a.counting {
			m.status = "counting..."
			return m, count(a)
		}
		return m, nil
	case "w":
		m.showWasted()
		return m, nil
	case "/":
		m.ask("filter", "filter (glob, re:REGEX, or text): ", m.treeFilter())
		return m, nil
	case "esc":
		if t := m.currentTree(); t != nil && t.filter != "" {
			t.setFilter("")
			m.rsel, m.rtop = 0, 0
		}
		return m, nil
	}
	if m.focus == paneLeft {
		switch k {
		case "up", "k":
			m.lsel--
		case "down", "j":
			m.lsel++
		case "pgup":
			m.lsel -= m.bodyHeight()
		case "pgdown":
			m.lsel += m.bodyHeight()
		case "home", "g":
			m.lsel = 0
		case "end", "G":
			m.lsel = len(m.left) - 1
		case "enter", "right", "l":
			m.focus = paneRight
		}
		m.lsel = min(max(m.lsel, 0), len(m.left)-1)
		m.rsel, m.rtop = 0, 0
		return m, nil
	}
	t := m.currentTree()
	if t == nil {
		return m, nil
	}
	n := t.rows()
	switch k {
	case "up", "k":
		m.rsel--
	case "down", "j":
		m.rsel++
	case "pgup":
		m.rsel -= m.bodyHeight()
	case "pgdown":
		m.rsel += m.bodyHeight()
	case "home", "g":
		m.rsel = 0
	case "end", "G":
		m.rsel = n - 1
	case "left", "h":
		m.focus = paneLeft
	case " ":
		if err := t.toggle(m.rsel); err != nil {
			m.status = "error: " + safe(err.Error())
		}
	case "enter":
		if r, _, _, err := t.rowAt(m.rsel); err == nil && r.isDir() && t.filter == "" {
			if err := t.toggle(m.rsel); err != nil {
				m.status = "error: " + safe(err.Error())
			}
		} else if err == nil {
			m.showContent(t, r)
		}
	case "b":
		if r, _, _, err := t.rowAt(m.rsel); err == nil {
			m.showBlame(t, r)
		}
	case "e":
		if _, _, _, err := t.rowAt(m.rsel); err == nil {
			m.ask("extract", "extract to directory: ", m.opts.ExtractDir)
		}
	}
	m.rsel = min(max(m.rsel, 0), max(t.rows()-1, 0))
	return m, nil
}

func (m *Model) overlayKey(msg tea.KeyMsg) {
	o := m.overlay
	page := m.bodyHeight() + 2
	switch msg.String() {
	case "q", "esc", "enter", "?", "b":
		m.overlay = nil
		return
	case "up", "k":
		o.top--
	case "down", "j":
		o.top++
	case "pgup":
		o.top -= page
	case "pgdown", " ":
		o.top += page
	case "home", "g":
		o.top = 0
	case "end", "G":
		o.top = len(o.lines) - page
	}
	o.top = max(min(o.top, len(o.lines)-page), 0)
}

func (m *Model) ask(kind, label, value string) {
	ti := textinput.New()
	ti.Prompt = label
	ti.SetValue(value)
	ti.CharLimit = 4096
	ti.Focus()
	m.prompt, m.promptKind = &ti, kind
}

func (m *Model) promptKey(msg tea.KeyMsg) (tea.Model, tea.Cmd) {
	switch msg.String() {
	case "esc", "ctrl+c":
		m.prompt = nil
		return m, nil
	case "enter":
		val := m.prompt.Value()
		m.prompt = nil
		switch m.promptKind {
		case "filter":
			if t := m.currentTree(); t != nil {
				if err := t.setFilter(val); err != nil {
					m.status = "error: " + safe(err.Error())
				} else if val != "" {
					m.status = fmt.Sprintf("%d match(es) of %s (esc clears)", t.rows(), safe(val))
					m.focus = paneRight
				}
				m.rsel, m.rtop = 0, 0
			}
		case "extract":
			m.extract(val)
		}
		return m, nil
	}
	ti, cmd := m.prompt.Update(msg)
	m.prompt = &ti
	return m, cmd
}

func (m *Model) treeFilter() string {
	if t := m.currentTree(); t != nil {
		return t.filter
	}
	return ""
}

// cur is the selected line of the left pane.
func (m *Model) cur() leftRow { return m.left[m.lsel] }

// currentTree is the tree of the selected layer (built when the
// selection, the mode or changes-only changed; folds are kept otherwise).
func (m *Model) currentTree() *tree {
	l := m.cur()
	layer := l.layer
	if l.art.memory == "" && layer < 0 {
		return nil
	}
	key := fmt.Sprintf("%p/%d/%v/%v", l.art, layer, m.stage, m.changesOnly)
	if m.tree != nil && m.treeKey == key {
		return m.tree
	}
	t, err := newTree(l.art, max(layer, 0), m.stage, m.changesOnly)
	if err != nil {
		m.status = "error: " + safe(err.Error())
		return nil
	}
	m.tree, m.treeKey = t, key
	return t
}

// viewPath is the path of the view (amber cat, amber extract) that holds
// row r of t as shown.
func (t *tree) viewPath(r row) (string, error) {
	if r.view != "" {
		return r.view, nil
	}
	if r.layer < 0 {
		return "", errors.New("no version of it to read here")
	}
	a := t.art.a
	rel := ""
	if r.rel != "" {
		rel = "/" + r.rel
	}
	kind, n := "layers", r.layer
	if r.isDir() && t.stage && r.mark != markRemoved {
		kind, n = "stages", t.layer
	}
	if a.Kind == manifest.KindImage {
		return fmt.Sprintf("images/%s/%s/%d%s", a.Name, kind, n, rel), nil
	}
	nl := len(a.Layers)
	switch {
	case kind == "layers" && n == nl-1:
		return "containers/" + a.Name + "/changes" + rel, nil
	case kind == "stages" && n == nl-1:
		return "containers/" + a.Name + "/rootfs" + rel, nil
	case kind == "stages" && n == nl-2:
		return "containers/" + a.Name + "/pristine" + rel, nil
	case a.Container != nil && a.Container.Image != "":
		return fmt.Sprintf("images/%s/%s/%d%s", a.Container.Image, kind, n, rel), nil
	}
	return "", fmt.Errorf("layer %d of container %s is in no image of the archive: not reachable in the view", n, safe(a.Name))
}

func (m *Model) extract(dest string) {
	t := m.currentTree()
	if t == nil {
		return
	}
	r, _, _, err := t.rowAt(m.rsel)
	if err != nil {
		m.status = "error: " + safe(err.Error())
		return
	}
	if dest == "" {
		dest = m.opts.ExtractDir
	}
	vp, err := t.viewPath(r)
	if err == nil {
		var en *view.Entry
		if en, err = m.v.Stat(vp); err == nil {
			name := path.Base(vp)
			var res *extract.Result
			if res, err = extract.To(m.v, en, dest, name, extract.Options{}); err == nil || errors.Is(err, extract.ErrIncomplete) {
				target := path.Join(dest, name)
				if m.opts.Extracted != nil {
					if cerr := m.opts.Extracted(vp, target, res); cerr != nil {
						err = errors.Join(err, cerr)
					}
				}
				if err == nil {
					m.status = fmt.Sprintf("extracted %s to %s: %d files (%d bytes), %d dirs; recorded in the custody log", safe(vp), safe(target), res.Files, res.Bytes, res.Dirs)
					return
				}
			}
		}
	}
	m.status = "extract: " + safe(err.Error())
}

func (m *Model) showBlame(t *tree, r row) {
	if t.art.memory != "" {
		m.status = "blame: memory files are in no layer"
		return
	}
	ts, err := layers.Blame(t.art.ixs, r.rel)
	if err != nil {
		m.status = "blame: " + safe(err.Error())
		return
	}
	lines := []string{"/" + safe(r.rel), ""}
	for _, x := range ts {
		lines = append(lines, fmt.Sprintf("layer %d  %c %s  (%s)", x.Layer, x.Kind, x.How, t.art.a.Layers[x.Layer].Digest.Short()))
	}
	switch {
	case len(ts) == 0:
		lines = append(lines, "no layer holds it")
	case ts[len(ts)-1].Kind == 'D':
		lines = append(lines, fmt.Sprintf("deleted in layer %d; not in the merged view", ts[len(ts)-1].Layer))
	default:
		lines = append(lines, fmt.Sprintf("visible version from layer %d", ts[len(ts)-1].Layer))
	}
	m.overlay = &overlay{title: "blame", lines: lines}
}

func (m *Model) showWasted() {
	a := m.cur().art
	if a.memory != "" {
		return
	}
	if a.reports == nil {
		m.status = "not counted yet (C counts)"
		if a.counting {
			m.status = "counting..."
		}
		return
	}
	var lines []string
	var total int64
	for i, r := range a.reports {
		total += r.Wasted
		lines = append(lines, fmt.Sprintf("layer %d: %d bytes wasted by later layers", i, r.Wasted))
		cs := append([]layers.PathChange(nil), r.Changes...)
		sort.SliceStable(cs, func(x, y int) bool { return cs[x].Size > cs[y].Size })
		for _, c := range cs {
			lines = append(lines, fmt.Sprintf("  %10d  %s  (%s in layer %d)", c.Size, safe(c.Path), c.Fate, c.FateLayer))
		}
	}
	lines = append([]string{fmt.Sprintf("wasted space: %d bytes in %d layers (as amber layers counts it)", total, len(a.reports)), ""}, lines...)
	m.overlay = &overlay{title: "efficiency", lines: lines}
}

const helpText = `  arrows, j/k    move          pgup/pgdn, g/G   page, top, end
  tab            switch pane   left/right       pane
  space          fold/unfold a directory
  enter          a file's content (checked against its SHA-256);
                 a modified file: its diff against the version below
  s              layer alone / stage (all layers up to it merged)
  c              changes only
  /              filter: glob (*.conf), re:REGEX, or text; esc clears
  b              blame: which layers touched the path
  e              extract it (custody recorded, as amber extract)
  w              wasted space (efficiency), as amber layers counts it
  C              count A/M/D of a large artifact
  ?              this help     q                quit

  marks: + added  ~ modified  - removed  (blank) unchanged
  names are shown escaped ("\x1b...", "\n"): evidence is hostile`

var (
	styleAdded    = lipgloss.NewStyle().Foreground(lipgloss.Color("2"))
	styleModified = lipgloss.NewStyle().Foreground(lipgloss.Color("3"))
	styleRemoved  = lipgloss.NewStyle().Foreground(lipgloss.Color("1"))
	styleSel      = lipgloss.NewStyle().Reverse(true)
	styleDim      = lipgloss.NewStyle().Faint(true)
	styleTitle    = lipgloss.NewStyle().Bold(true)
)

func markStyle(mark byte) lipgloss.Style {
	switch mark {
	case markAdded:
		return styleAdded
	case markModified:
		return styleModified
	case markRemoved:
		return styleRemoved
	}
	return lipgloss.NewStyle()
}

// View draws the screen: only the rows in sight are read.
func (m *Model) View() string {
	if m.quitting {
		return ""
	}
	w, h := max(m.w, 20), max(m.h, 6)
	var b strings.Builder
	line := func(s string) {
		b.WriteString(fit(s, w))
		b.WriteByte('\n')
	}
	if m.overlay != nil {
		o := m.overlay
		line(styleTitle.Render(o.title) + styleDim.Render("  (arrows scroll, q/esc close)"))
		for i := 0; i < h-1; i++ {
			s := ""
			if k := o.top + i; k < len(o.lines) {
				s = o.lines[k]
			}
			if i < h-2 {
				line(s)
			} else {
				b.WriteString(fit(s, w))
			}
		}
		return b.String()
	}
	lw := max(20, w*35/100)
	rw := w - lw - 1
	body := m.bodyHeight()
	cur := m.cur()
	t := m.currentTree()

	title := "amber browse  " + safe(cur.art.a.Kind+"s/"+cur.art.a.Name)
	switch {
	case cur.art.memory != "":
		title += "  memory " + safe(cur.art.proc.Dir)
	case cur.layer >= 0:
		mode := "layer"
		if m.stage {
			mode = "stage"
		}
		title += fmt.Sprintf("  %s %d", mode, cur.layer)
		if m.changesOnly {
			title += "  [changes only]"
		}
		if t != nil && t.filter != "" {
			title += "  [filter " + safe(t.filter) + "]"
		}
	}
	line(styleTitle.Render(title))

	// Left pane.
	if m.lsel < m.ltop {
		m.ltop = m.lsel
	}
	if m.lsel >= m.ltop+body {
		m.ltop = m.lsel - body + 1
	}
	leftLines := make([]string, body)
	for i := range leftLines {
		k := m.ltop + i
		if k >= len(m.left) {
			leftLines[i] = pad("", lw)
			continue
		}
		s := m.leftText(m.left[k])
		if k == m.lsel {
			s = cursor(m.focus == paneLeft) + s
			leftLines[i] = styleSel.Render(pad(trunc(s, lw), lw))
		} else {
			leftLines[i] = pad(trunc("  "+s, lw), lw)
		}
	}
	// Right pane.
	rightLines := make([]string, body)
	var sel *row
	if t != nil {
		n := t.rows()
		m.rsel = min(max(m.rsel, 0), max(n-1, 0))
		if m.rsel < m.rtop {
			m.rtop = m.rsel
		}
		if m.rsel >= m.rtop+body {
			m.rtop = m.rsel - body + 1
		}
		m.rtop = max(0, min(m.rtop, n-body))
		for i := range rightLines {
			k := m.rtop + i
			if k >= n {
				break
			}
			r, depth, open, err := t.rowAt(k)
			if err != nil {
				rightLines[i] = "error: " + safe(err.Error())
				continue
			}
			s := rowText(r, depth, open, rw)
			if k == m.rsel {
				rc := r
				sel = &rc
				rightLines[i] = styleSel.Render(pad(trunc(cursor(m.focus == paneRight)+s, rw), rw))
			} else {
				rightLines[i] = markStyle(r.mark).Render(trunc("  "+s, rw))
			}
		}
		if n == 0 {
			rightLines[0] = styleDim.Render("  (empty)")
		}
	} else if cur.layer < 0 {
		rightLines = m.artSummary(cur.art, body)
	}
	for i := 0; i < body; i++ {
		line(leftLines[i] + "│" + rightLines[i])
	}
	// Details of the selection, the layer, the legend.
	if sel != nil {
		line(m.details(t, *sel))
	} else {
		line("")
	}
	line(m.layerLine(cur))
	switch {
	case m.prompt != nil:
		b.WriteString(fit(m.prompt.View(), w))
	case m.status != "":
		b.WriteString(fit(m.status, w))
	default:
		b.WriteString(fit(styleAdded.Render("+ added")+"  "+styleModified.Render("~ modified")+"  "+styleRemoved.Render("- removed")+"    unchanged  "+styleDim.Render("? keys  q quit"), w))
	}
	return b.String()
}

func cursor(focused bool) string {
	if focused {
		return "> "
	}
	return "* "
}

func (m *Model) leftText(l leftRow) string {
	a := l.art
	switch {
	case a.memory != "":
		p := a.proc
		return fmt.Sprintf(" mem %d %s %s %dmaps", p.PID, safe(p.Comm), human(p.Bytes), p.Mappings)
	case l.layer < 0:
		return safe(a.a.Kind + "s/" + a.a.Name)
	}
	n := l.layer
	counts := "    ?"
	if a.reports != nil && n < len(a.reports) {
		r := a.reports[n]
		counts = fmt.Sprintf("+%d~%d-%d", r.Added, r.Changed, r.Deleted)
	} else if a.counting {
		counts = "  ..."
	}
	what := a.short[n]
	if a.a.Kind == manifest.KindContainer && n == len(a.a.Layers)-1 {
		what = "container changes"
	}
	return fmt.Sprintf(" %d %s %s %s", n, human(a.a.Layers[n].Size), counts, safe(orDash(what)))
}

func (m *Model) artSummary(a *artInfo, body int) []string {
	out := make([]string, body)
	s := []string{
		" " + safe(a.a.Kind+"s/"+a.a.Name),
		fmt.Sprintf(" %d layers, %d files", len(a.a.Layers), a.a.Files),
	}
	if !a.a.ImageID.IsZero() {
		s = append(s, " image "+a.a.ImageID.Short())
	}
	for _, r := range a.a.Refs {
		s = append(s, " ref "+safe(r))
	}
	if c := a.a.Container; c != nil {
		s = append(s, " container "+safe(c.ID), " image "+safe(c.Image), " state "+safe(c.State)+", read by "+safe(c.Route),
			fmt.Sprintf(" changes: %d added, %d changed, %d deleted", c.Changes.Added, c.Changes.Changed, c.Changes.Deleted))
		if c.MemorySkipped != "" {
			s = append(s, " memory not taken: "+safe(c.MemorySkipped))
		}
	}
	s = append(s, "", " select a layer (down) to see its files")
	copy(out, s)
	return out
}

// details is the line under the panes: the selected entry in full.
func (m *Model) details(t *tree, r row) string {
	typ := view.TypeName(r.rec.Type)
	s := fmt.Sprintf("%c %s %s", r.mark, view.ModeString(r.rec.Type, r.rec.Mode), "/"+safe(r.rel))
	if r.rec.Type == fileindex.TypeSymlink {
		s += " -> " + safe(r.rec.Linkname)
	}
	if r.rec.Type == fileindex.TypeLink || r.rec.Has(fileindex.FlagHardlink) {
		s += " (hard link to /" + safe(r.rec.Linkname) + ")"
	}
	s += fmt.Sprintf("  %s %d:%d %d bytes", typ, r.rec.UID, r.rec.GID, r.rec.Size)
	if r.layer >= 0 && !t.stage && r.layer != t.layer {
		s += fmt.Sprintf(" (version of layer %d)", r.layer)
	} else if t.stage && r.layer >= 0 {
		s += fmt.Sprintf(" (from layer %d)", r.layer)
	}
	if r.note != "" {
		s += "  " + r.note
	}
	return s
}

func (m *Model) layerLine(l leftRow) string {
	a := l.art
	if a.memory != "" {
		return fmt.Sprintf("process %d %s: %d mappings, %d bytes", a.proc.PID, safe(a.proc.Comm), a.proc.Mappings, a.proc.Bytes)
	}
	if l.layer < 0 {
		return ""
	}
	ly := a.a.Layers[l.layer]
	s := fmt.Sprintf("layer %d %s %d bytes", l.layer, ly.Digest.Short(), ly.Size)
	if a.reports != nil && l.layer < len(a.reports) {
		r := a.reports[l.layer]
		s += fmt.Sprintf("  %d added %d modified %d deleted, %d bytes wasted later", r.Added, r.Changed, r.Deleted, r.Wasted)
	} else if a.countErr != nil {
		s += "  count failed: " + safe(a.countErr.Error())
	} else if !a.counting {
		s += fmt.Sprintf("  (%d entries: C counts)", a.entries)
	}
	return s + "  " + safe(orDash(a.createdBy[l.layer]))
}

// rowText is a tree line: mark, mode, owner, size, then the name indented.
func rowText(r row, depth int, open bool, width int) string {
	fold := "  "
	if r.isDir() && r.layer >= 0 {
		fold = "▸ "
		if open {
			fold = "▾ "
		}
	}
	size := human(r.rec.Size)
	if r.isDir() {
		size = "-"
	}
	name := safe(r.name)
	if r.rec.Type == fileindex.TypeSymlink {
		name += " -> " + safe(r.rec.Linkname)
	}
	if r.rec.Type == fileindex.TypeLink || r.rec.Has(fileindex.FlagHardlink) {
		name += " => " + safe(r.rec.Linkname) // a hard link, as amber ls says "link to"
	}
	return fmt.Sprintf("%c %s %4s %5s %s%s%s", r.mark, view.ModeString(r.rec.Type, r.rec.Mode), fmt.Sprintf("%d:%d", r.rec.UID, r.rec.GID), size, strings.Repeat(" ", 2*min(depth, 20)), fold, name)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// human is a size in at most five characters.
func human(n int64) string {
	const unit = 1024
	if n < 10000 {
		return strconv.FormatInt(n, 10)
	}
	f := float64(n)
	for _, u := range []string{"K", "M", "G", "T", "P"} {
		f /= unit
		if f < 999.5 {
			if f < 9.95 {
				return strconv.FormatFloat(f, 'f', 1, 64) + u
			}
			return strconv.FormatFloat(f, 'f', 0, 64) + u
		}
	}
	return strconv.FormatFloat(f, 'f', 0, 64) + "E"
}

// trunc cuts s to width cells, with a mark.
func trunc(s string, width int) string {
	if ansi.StringWidth(s) <= width {
		return s
	}
	return ansi.Truncate(s, width, "…")
}

func pad(s string, width int) string {
	if n := ansi.StringWidth(s); n < width {
		return s + strings.Repeat(" ", width-n)
	}
	return s
}

func fit(s string, width int) string { return trunc(s, width) }
