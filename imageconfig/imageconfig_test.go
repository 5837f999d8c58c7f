package imageconfig

import (
	"strings"
	"testing"

	"github.com/amber-forensics/amber/internal/textsafe"
)

func TestInstruction(t *testing.T) {
	for _, c := range []struct{ by, comment, want string }{
		{`/bin/sh -c #(nop)  CMD ["sh"]`, "", `CMD ["sh"]`},
		{`/bin/sh -c #(nop) ADD file:3b6d1c in / `, "", `ADD file:3b6d1c /`},
		{`/bin/sh -c #(nop) COPY dir:9f2a in /app `, "", `COPY dir:9f2a /app`},
		{`/bin/sh -c #(nop)  ENV PATH=/usr/bin`, "", `ENV PATH=/usr/bin`},
		{`/bin/sh -c #(nop)  EXPOSE 80/tcp`, "", `EXPOSE 80/tcp`},
		{`/bin/sh -c #(nop) WORKDIR /srv`, "", `WORKDIR /srv`},
		{`/bin/sh -c #(nop)  LABEL a=b`, "", `LABEL a=b`},
		{`/bin/sh -c #(nop)  USER app`, "", `USER app`},
		{`/bin/sh -c #(nop)  ENTRYPOINT ["/init"]`, "", `ENTRYPOINT ["/init"]`},
		{`/bin/sh -c #(nop)  VOLUME [/data]`, "", `VOLUME [/data]`},
		{`/bin/sh -c #(nop)  STOPSIGNAL SIGQUIT`, "", `STOPSIGNAL SIGQUIT`},
		{`/bin/sh -c #(nop)  SHELL [/bin/bash -c]`, "", `SHELL [/bin/bash -c]`},
		{`/bin/sh -c #(nop)  ARG V=1`, "", `ARG V=1`},
		{`/bin/sh -c apk add curl && rm -rf /var/cache`, "", `RUN apk add curl && rm -rf /var/cache`},
		{`|2 V=1 W=x /bin/sh -c make install`, "", `RUN make install`},
		{`RUN /bin/sh -c apk add git # buildkit`, "buildkit.dockerfile.v0", `RUN apk add git`},
		{`RUN |1 V=2 /bin/sh -c echo $V # buildkit`, "", `RUN echo $V`},
		{`COPY . /app # buildkit`, "", `COPY . /app`},
		{`ADD https://x/y.tgz /opt # buildkit`, "", `ADD https://x/y.tgz /opt`},
		{`ENV A=b`, "", `ENV A=b`},
		{`EXPOSE map[8080/tcp:{} 443/tcp:{}]`, "", `EXPOSE 443/tcp 8080/tcp`},
		{`WORKDIR /app`, "", `WORKDIR /app`},
		{`CMD ["node" "server.js"]`, "", `CMD ["node" "server.js"]`},
		{`HEALTHCHECK &{["CMD-SHELL" "curl -f localhost"] "30s" "3s" "0s" '\x00'}`, "", `HEALTHCHECK &{["CMD-SHELL" "curl -f localhost"] "30s" "3s" "0s" '\x00'}`},
		{``, "Imported from -", `ADD <imported> /`},
	} {
		got, _, ok := Instruction(History{CreatedBy: c.by, Comment: c.comment})
		if !ok || got != c.want {
			t.Errorf("%q: got %q (%v), want %q", c.by, got, ok, c.want)
		}
	}
	for _, bad := range []string{"", "make install", "frobnicate the thing"} {
		if got, note, ok := Instruction(History{CreatedBy: bad}); ok || note == "" {
			t.Errorf("%q recovered as %q", bad, got)
		}
	}
}

func TestDockerfileAndHistory(t *testing.T) {
	c, err := Parse([]byte(`{"rootfs":{"type":"layers","diff_ids":["sha256:a","sha256:b"]},"history":[
	 {"created":"2026-11-27T12:00:00Z","comment":"Imported from -"},
	 {"created":"2026-11-27T12:01:00Z","created_by":"/bin/sh -c echo hi > /x"},
	 {"created":"2026-11-27T12:02:00Z","created_by":"/bin/sh -c #(nop)  CMD [\"sh\"]","empty_layer":true},
	 {"created_by":"frobnicate","empty_layer":true}]}`))
	if err != nil {
		t.Fatal(err)
	}
	steps, ok := c.Steps()
	if !ok || steps[0].Layer != 0 || steps[1].Layer != 1 || steps[2].Layer != -1 {
		t.Errorf("steps %+v ok %v", steps, ok)
	}
	df := string(Dockerfile(c))
	for _, want := range []string{"FROM scratch\n", "ADD <imported> /\n", "# layer 1, 2026-11-27T12:01:00Z\nRUN echo hi > /x\n", "CMD [\"sh\"]\n", "unrecognized: frobnicate\n# (not recoverable)\n"} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q:\n%s", want, df)
		}
	}
	h := string(HistoryText(c, []int64{100, 200}))
	lines := strings.Split(strings.TrimSpace(h), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[1], "-") || !strings.Contains(lines[3], "200") || !strings.Contains(lines[4], "Imported from -") {
		t.Errorf("history:\n%s", h)
	}
	// Counts that disagree are said, not hidden.
	c.RootFS.DiffIDs = c.RootFS.DiffIDs[:1]
	if df := string(Dockerfile(c)); !strings.Contains(df, "uncertain") {
		t.Errorf("mismatch not reported:\n%s", df)
	}
}

// TestDockerfileHostileHistory: a history comment or command holding a
// newline (or another control character) never becomes an instruction of
// its own: a comment stays one comment line, a command that spans lines
// or holds an escape sequence is not presented as recovered, and both are
// shown quoted with the characters escaped.
func TestDockerfileHostileHistory(t *testing.T) {
	c := &Config{History: []History{
		{Comment: "innocent\nUSER root"},
		{CreatedBy: "/bin/sh -c echo hi\nUSER root", EmptyLayer: true},
		{CreatedBy: "RUN /bin/sh -c echo\rUSER root # buildkit", EmptyLayer: true},
		{CreatedBy: "frobnicate\nUSER root", EmptyLayer: true},
		{CreatedBy: "", Comment: "Imported from \x1b]0;t\a\nUSER root"},
		{CreatedBy: "/bin/sh -c #(nop)  USER nobody\x1b[6Droot", EmptyLayer: true},
	}}
	c.RootFS.DiffIDs = []string{"sha256:a", "sha256:b"}
	df := string(Dockerfile(c))
	checkDockerfileLines(t, df, 1) // ADD <imported>
	for _, want := range []string{
		"# layer 0; \"no command recorded (comment: innocent\\nUSER root)\"\n# (not recoverable)\n",
		"; the command holds control or invisible characters: not shown as an instruction\n# (not recoverable) \"RUN echo hi\\nUSER root\"\n",
		"# (not recoverable) \"RUN echo\\rUSER root\"\n",
		"\"unrecognized: frobnicate\\nUSER root\"\n",
		"(Imported from \\x1b]0;t\\a\\nUSER root)",
		"# (not recoverable) \"USER nobody\\x1b[6Droot\"\n",
		"is shown quoted",
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q:\n%s", want, df)
		}
	}
	if _, _, ok := Instruction(c.History[1]); ok {
		t.Errorf("a command spanning lines is recovered")
	}
	h := string(HistoryText(c, []int64{1}))
	if n := strings.Count(h, "\n"); n != len(c.History)+1 || !strings.Contains(h, `"/bin/sh -c echo hi\nUSER root"`) || !strings.Contains(h, `# "innocent\nUSER root"`) {
		t.Errorf("history:\n%s", h)
	}
}

// checkDockerfileLines fails unless every line of df is clean text and a
// comment, FROM scratch, or one of at most n instructions.
func checkDockerfileLines(t *testing.T, df string, n int) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(df, "\n"), "\n")
	instr := 0
	for _, l := range lines {
		if !textsafe.Clean(l) {
			t.Errorf("line %q is not clean", l)
		}
		if strings.HasPrefix(l, "#") || l == "FROM scratch" {
			continue
		}
		if kw, _, _ := strings.Cut(l, " "); !isKeyword(kw) {
			t.Errorf("line %q is neither a comment nor an instruction", l)
		}
		instr++
	}
	if instr > n {
		t.Errorf("%d instructions from %d history entries:\n%s", instr, n, df)
	}
}

func FuzzInstruction(f *testing.F) {
	f.Add("|2 A=1 /bin/sh -c x", "")
	f.Add("RUN |9 /bin/sh -c # buildkit", "")
	f.Add("/bin/sh -c a\nUSER root", "x\ny")
	f.Fuzz(func(t *testing.T, by, comment string) {
		h := History{CreatedBy: by, Comment: comment}
		Instruction(h)
		checkDockerfileLines(t, string(Dockerfile(&Config{History: []History{h}})), 1)
	})
}
