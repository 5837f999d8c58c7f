package export

import (
	"encoding/json"
	"fmt"
	"io"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/amber-forensics/amber/archive"
)

// The CASE 1.x and UCO 1.x namespaces (the ontologies' own IRIs, as
// CASE-Examples writes them).
var caseContext = map[string]any{
	"case-investigation": "https://ontology.caseontology.org/case/investigation/",
	"uco-action":         "https://ontology.unifiedcyberontology.org/uco/action/",
	"uco-core":           "https://ontology.unifiedcyberontology.org/uco/core/",
	"uco-identity":       "https://ontology.unifiedcyberontology.org/uco/identity/",
	"uco-observable":     "https://ontology.unifiedcyberontology.org/uco/observable/",
	"uco-tool":           "https://ontology.unifiedcyberontology.org/uco/tool/",
	"uco-types":          "https://ontology.unifiedcyberontology.org/uco/types/",
	"uco-vocabulary":     "https://ontology.unifiedcyberontology.org/uco/vocabulary/",
	"xsd":                "http://www.w3.org/2001/XMLSchema#",
}

// jsonText keeps a string that is valid UTF-8 as it is (JSON carries any
// Unicode exactly); one that is not is written with Escape (backslash
// doubled, each bad byte \xNN), where encoding/json would put U+FFFD and
// lose the bytes.
func jsonText(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			escByte(&b, s[i])
		case r == '\\':
			b.WriteString(`\\`)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// dateTime is t as an xsd:dateTime literal, written as DFXML writes its
// times (XSD has no year 0000: a manifest's times are evidence too).
func dateTime(t time.Time) map[string]any {
	return map[string]any{"@type": "xsd:dateTime", "@value": string(appendDateTime(nil, t))}
}

func ref(id string) map[string]any { return map[string]any{"@id": id} }

func hashNode(method, hex string) map[string]any {
	return map[string]any{
		"@type":                "uco-types:Hash",
		"uco-types:hashMethod": map[string]any{"@type": "uco-vocabulary:HashNameVocab", "@value": method},
		"uco-types:hashValue":  map[string]any{"@type": "xsd:hexBinary", "@value": hex},
	}
}

// WriteCASE writes the CASE/UCO JSON-LD of a's acquisition to out:
//
//   - a case-investigation:Investigation named after the case (when the
//     manifest has one), whose objects are everything below;
//   - the examiner (else the user who ran the capture) as a
//     uco-identity:Person, and amber as a uco-tool:Tool with the version
//     that wrote the archive;
//   - the acquisition as a case-investigation:InvestigativeAction
//     ("acquired"): performer the examiner, instrument amber, start and
//     end times, its objects the sources the capture read (each a
//     uco-observable:ObservableObject named "KIND PATH", a File with its
//     SHA-256 when the source was one file) and what it took from them
//     (each image, container, volume: an ObservableObject named by its
//     mount-layout path, images/NAME, with its IDs, file count and Merkle
//     root), its results the archive and a
//     case-investigation:ProvenanceRecord (exhibit number, notes);
//   - the archive as a uco-observable:File with a FileFacet (name, size)
//     and a ContentDataFacet holding the hashes its sidecars record
//     (SHA256, and MD5 and SHA1 when recorded);
//   - each custody event (the sealed ones, then the sidecar log's) as a
//     further InvestigativeAction named after its action ("sealed",
//     "verified", "mounted", ...), performed by its actor at its time,
//     its object the archive, its details in its description.
//
// Node IDs are IRIs under urn:amber:SHA256/ (the archive's digest, else
// its sealed custody head), so exports of one archive agree.
func WriteCASE(out io.Writer, a *archive.Archive, opts Options) error {
	m := a.Manifest
	id := opts.SHA256
	if id == "" {
		id = "custody-" + m.Custody.Head.Hex()
	}
	kb := "urn:amber:" + id + "/"
	ctx := map[string]any{"kb": kb}
	for k, v := range caseContext {
		ctx[k] = v
	}
	var graph []map[string]any
	add := func(n map[string]any) { graph = append(graph, n) }

	persons := map[string]string{}
	person := func(name string) string {
		if id, ok := persons[name]; ok {
			return id
		}
		id := "kb:person-" + strconv.Itoa(len(persons)+1)
		persons[name] = id
		add(map[string]any{"@id": id, "@type": "uco-identity:Person", "uco-core:name": jsonText(name)})
		return id
	}
	examiner := m.Case.Examiner
	if examiner == "" {
		examiner = m.Acquisition.User
	}
	performer := person(examiner)

	add(map[string]any{
		"@id": "kb:tool-amber", "@type": "uco-tool:Tool",
		"uco-core:name": jsonText(m.Tool.Name), "uco-tool:version": jsonText(m.Tool.Version), "uco-tool:toolType": "Acquisition",
	})

	// The archive file and its hashes, as the sidecars record them.
	content := map[string]any{"@type": "uco-observable:ContentDataFacet"}
	var hashes []any
	for _, h := range []struct{ method, hex string }{{"SHA256", opts.SHA256}, {"MD5", opts.MD5}, {"SHA1", opts.SHA1}} {
		if h.hex != "" {
			hashes = append(hashes, hashNode(h.method, h.hex))
		}
	}
	if len(hashes) > 0 {
		content["uco-observable:hash"] = hashes
	}
	fileFacet := map[string]any{"@type": "uco-observable:FileFacet", "uco-observable:fileName": jsonText(path.Base(opts.Name)), "uco-observable:filePath": jsonText(opts.Name)}
	if opts.Size > 0 {
		fileFacet["uco-observable:sizeInBytes"] = opts.Size
		content["uco-observable:sizeInBytes"] = opts.Size
	}
	add(map[string]any{
		"@id": "kb:archive", "@type": "uco-observable:File",
		"uco-core:name":        jsonText(path.Base(opts.Name)),
		"uco-core:description": fmt.Sprintf("amber evidence archive (format %s v%d)", m.Format, m.FormatVersion),
		"uco-core:hasFacet":    []any{fileFacet, content},
	})
	prov := map[string]any{
		"@id": "kb:provenance-archive", "@type": "case-investigation:ProvenanceRecord",
		"uco-core:object": []any{ref("kb:archive")},
	}
	if m.Case.Exhibit != "" {
		prov["case-investigation:exhibitNumber"] = jsonText(m.Case.Exhibit)
	}
	if m.Case.Notes != "" {
		prov["uco-core:description"] = jsonText(m.Case.Notes)
	}
	add(prov)

	// What the capture read.
	var sources []any
	for i, s := range m.Acquisition.Sources {
		sid := "kb:source-" + strconv.Itoa(i+1)
		n := map[string]any{"@id": sid, "@type": "uco-observable:ObservableObject", "uco-core:name": jsonText(s.Kind + " " + s.Path)}
		if !s.SHA256.IsZero() {
			n["@type"] = "uco-observable:File"
			cd := map[string]any{"@type": "uco-observable:ContentDataFacet", "uco-observable:hash": []any{hashNode("SHA256", s.SHA256.Hex())}}
			if s.Size > 0 {
				cd["uco-observable:sizeInBytes"] = s.Size
			}
			n["uco-core:hasFacet"] = []any{cd}
		}
		add(n)
		sources = append(sources, ref(sid))
	}
	// What was taken from them: each image, container, volume, pod and
	// OCI artifact, as the archive holds it.
	for i, art := range m.Artifacts {
		aid := "kb:artifact-" + strconv.Itoa(i+1)
		desc := art.Kind
		if art.Container != nil {
			desc += " " + art.Container.ID + " of image " + art.Container.ImageRef + ", state " + art.Container.State + ", read by " + art.Container.Route
		}
		if len(art.Refs) > 0 {
			desc += " " + strings.Join(art.Refs, " ")
		}
		if !art.ImageID.IsZero() {
			desc += ", image ID " + art.ImageID.String()
		}
		if !art.MerkleRoot.IsZero() {
			desc += fmt.Sprintf(", %d files, Merkle root %s", art.Files, art.MerkleRoot.String())
		}
		add(map[string]any{"@id": aid, "@type": "uco-observable:ObservableObject",
			"uco-core:name": jsonText(art.Kind + "s/" + art.Name), "uco-core:description": jsonText(desc)})
		sources = append(sources, ref(aid))
	}
	acq := m.Acquisition
	action := map[string]any{
		"@id": "kb:acquisition", "@type": "case-investigation:InvestigativeAction",
		"uco-core:name":         "acquired",
		"uco-core:description":  jsonText("amber capture on " + acq.Host + " by " + acq.User + ": " + strings.Join(acq.CommandLine, " ")),
		"uco-action:performer":  ref(performer),
		"uco-action:instrument": ref("kb:tool-amber"),
		"uco-action:startTime":  dateTime(acq.Started),
		"uco-action:endTime":    dateTime(acq.Finished),
		"uco-action:result":     []any{ref("kb:archive"), ref("kb:provenance-archive")},
	}
	if len(sources) > 0 {
		action["uco-action:object"] = sources
	}
	add(action)
	objects := []any{ref("kb:acquisition")}

	for i, ev := range opts.Custody {
		eid := "kb:custody-" + strconv.Itoa(ev.Seq)
		where := "sidecar custody log"
		if i < opts.Sealed {
			where = "sealed custody log"
		}
		keys := make([]string, 0, len(ev.Details))
		for k := range ev.Details {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		desc := fmt.Sprintf("custody event %d (%s) on %s", ev.Seq, where, ev.Host)
		for _, k := range keys {
			desc += "; " + k + "=" + ev.Details[k]
		}
		add(map[string]any{
			"@id": eid, "@type": "case-investigation:InvestigativeAction",
			"uco-core:name":        jsonText(ev.Action),
			"uco-core:description": jsonText(desc),
			"uco-action:performer": ref(person(ev.Actor)),
			"uco-action:startTime": dateTime(ev.Time),
			"uco-action:endTime":   dateTime(ev.Time),
			"uco-action:object":    []any{ref("kb:archive")},
		})
		objects = append(objects, ref(eid))
	}
	if m.Case.Case != "" {
		objects = append(objects, ref("kb:archive"), ref("kb:provenance-archive"), ref(performer), ref("kb:tool-amber"))
		add(map[string]any{
			"@id": "kb:investigation", "@type": "case-investigation:Investigation",
			"uco-core:name":   jsonText(m.Case.Case),
			"uco-core:object": objects,
		})
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(map[string]any{"@context": ctx, "@graph": graph}); err != nil {
		return fmt.Errorf("writing CASE/UCO: %w", err)
	}
	return nil
}
