package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/amber-forensics/amber/hashing"
)

// UploadChunk is how many bytes an Upload holds before it sends them
// (in memory; one chunk filling, one queued, one in flight): 16 MiB, as
// a registry may check the credentials of every request (htpasswd's
// bcrypt in distribution): with 4 MiB chunks a 300 MB capture into a
// loopback registry took 3.6-4.3 s, with 16 MiB 3.3-3.5 s, where amber
// push of the same archive, one upload, took 2.3-2.7 s.
const UploadChunk = 16 << 20

// Upload is a blob upload session (distribution's POST
// /v2/REPO/blobs/uploads/, PATCH chunks with Content-Range, PUT ?digest=)
// written to as an io.Writer: a capture streams its archive into it while
// it is written, and the local disk holds nothing of it. A registry that
// refuses chunks gets the rest spooled to an unnamed temp file and one
// monolithic upload at Commit. Nothing is tagged by an Upload: Push
// (ArchivePresent) does that once the blob is committed; Abort abandons
// the session.
type Upload struct {
	ctx    context.Context
	client *http.Client
	repo   name.Repository
	opts   Options
	base   string
	loc    string
	// first is the session's URL as opened: its state says offset 0,
	// which a registry takes for any offset (a PATCH cut short by Ctrl-C
	// may have left more bytes than the last URL's state says).
	first string
	off   int64
	buf   []byte
	// spool, once the registry refused a chunk, holds everything; dir is
	// where it is made.
	spool *os.File
	dir   string
	msg   func(string)
	// chunks go to the sender goroutine, which PATCHes them in order
	// while the capture fills the next (one queued, one in flight: the
	// upload overlaps compression); free returns their buffers; sent is
	// closed when the sender ends; serr is its first error; stop (on
	// Abort) has it drop what is queued.
	chunks   chan []byte
	free     chan []byte
	sent     chan struct{}
	mu       sync.Mutex
	serr     error
	stop     atomic.Bool
	finished bool
}

// StartUpload opens an upload session to ref's repository. dir is where
// a spool is made if the registry refuses chunks; msg tells the user so.
func StartUpload(ctx context.Context, ref name.Tag, opts Options, dir string, msg func(string)) (*Upload, error) {
	repo := ref.Context()
	kc := opts.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	where := Prefix + ref.Name()
	auth, err := authn.Resolve(ctx, kc, repo)
	if err != nil {
		return nil, fmt.Errorf("%s: credentials for %s: %w", where, repo.RegistryStr(), err)
	}
	rt, err := transport.NewWithContext(ctx, repo.Registry, auth, opts.transport(), []string{repo.Scope(transport.PushScope)})
	if err != nil {
		return nil, fmt.Errorf("upload to %s: %w", where, classify(repo, opts, err))
	}
	if opts.UserAgent != "" {
		rt = transport.NewUserAgent(rt, opts.UserAgent)
	}
	u := &Upload{ctx: ctx, repo: repo, opts: opts, dir: dir, msg: msg,
		client: &http.Client{Transport: rt, CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= MaxRedirects {
				return fmt.Errorf("more than %d redirects (last to %s)", MaxRedirects, req.URL.Redacted())
			}
			return nil
		}},
		base: fmt.Sprintf("%s://%s/v2/%s/blobs/uploads/", repo.Registry.Scheme(), repo.RegistryStr(), repo.RepositoryStr()),
	}
	if err := u.open(); err != nil {
		return nil, err
	}
	u.chunks, u.free, u.sent = make(chan []byte, 1), make(chan []byte, 3), make(chan struct{})
	go u.sender()
	return u, nil
}

// sender PATCHes the chunks in order; after an error it drops the rest.
func (u *Upload) sender() {
	defer close(u.sent)
	for b := range u.chunks {
		if u.sendErr() == nil && !u.stop.Load() {
			if err := u.send(b); err != nil {
				u.mu.Lock()
				u.serr = err
				u.mu.Unlock()
			}
		}
		select {
		case u.free <- b[:0]:
		default:
		}
	}
}

func (u *Upload) sendErr() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.serr
}

// finish hands over what is held and waits for the sender to end.
func (u *Upload) finish() error {
	if !u.finished {
		u.finished = true
		if len(u.buf) > 0 {
			u.chunks <- u.buf
			u.buf = nil
		}
		close(u.chunks)
		<-u.sent
	}
	return u.sendErr()
}

func (u *Upload) fail(what string, err error) error {
	return fmt.Errorf("upload to registry %s, repository %s: %s: %w", u.repo.RegistryStr(), u.repo.RepositoryStr(), what, classify(u.repo, u.opts, err))
}

// open starts a session (POST) and keeps its URL.
func (u *Upload) open() error {
	resp, err := u.do(http.MethodPost, u.base, nil, nil)
	if err != nil {
		return u.fail("starting the upload", err)
	}
	defer drain(resp)
	if err := transport.CheckError(resp, http.StatusAccepted); err != nil {
		return u.fail("starting the upload", err)
	}
	if err := u.follow(resp); err != nil {
		return err
	}
	u.first = u.loc
	return nil
}

// follow takes the session's next URL from an answer's Location.
func (u *Upload) follow(resp *http.Response) error {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return u.fail("upload session", errors.New("the registry gave no Location"))
	}
	l, err := resp.Request.URL.Parse(loc)
	if err != nil {
		return u.fail("upload session", fmt.Errorf("the registry gave Location %q: %w", loc, err))
	}
	u.loc = l.String()
	return nil
}

func (u *Upload) do(method, where string, body []byte, hdr map[string]string) (*http.Response, error) {
	var r io.Reader
	ctx := u.ctx
	if body != nil {
		r = bytes.NewReader(body)
		// A chunk is sent whole even on Ctrl-C: cut short, the registry
		// may keep its bytes while the session's URL (whose state names
		// the offset) is lost, and the DELETE that abandons the session
		// is then refused. It is a few MiB; the transport bounds the wait.
		ctx = context.WithoutCancel(ctx)
	}
	req, err := http.NewRequestWithContext(ctx, method, where, r)
	if err != nil {
		return nil, err
	}
	req.ContentLength = int64(len(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return u.client.Do(req)
}

func drain(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// Write sends p, a chunk at a time (by the sender goroutine).
func (u *Upload) Write(p []byte) (int, error) {
	if err := u.sendErr(); err != nil {
		return 0, err
	}
	if u.finished {
		return 0, errors.New("upload already ended")
	}
	if u.buf == nil {
		select {
		case u.buf = <-u.free:
		default:
			u.buf = make([]byte, 0, UploadChunk+UploadChunk/4)
		}
	}
	u.buf = append(u.buf, p...)
	if len(u.buf) >= UploadChunk {
		u.chunks <- u.buf
		u.buf = nil
	}
	return len(p), nil
}

// send sends b as one chunk, or to the spool once there is one.
func (u *Upload) send(b []byte) error {
	if u.spool != nil {
		if _, err := u.spool.Write(b); err != nil {
			return fmt.Errorf("spooling the upload: %w", err)
		}
		return nil
	}
	end := u.off + int64(len(b)) - 1
	resp, err := u.do(http.MethodPatch, u.loc, b, map[string]string{
		"Content-Type": "application/octet-stream", "Content-Range": fmt.Sprintf("%d-%d", u.off, end),
	})
	if err != nil {
		return u.fail("sending bytes "+fmt.Sprint(u.off), err)
	}
	defer drain(resp)
	switch resp.StatusCode {
	case http.StatusAccepted:
	case http.StatusRequestedRangeNotSatisfiable, http.StatusMethodNotAllowed, http.StatusNotImplemented, http.StatusBadRequest:
		if u.off == 0 {
			return u.toSpool(resp.StatusCode, b)
		}
		fallthrough
	default:
		return u.fail("sending bytes "+fmt.Sprint(u.off), transport.CheckError(resp, http.StatusAccepted))
	}
	if err := u.follow(resp); err != nil {
		return err
	}
	u.off = end + 1
	return nil
}

// toSpool: the registry refused the first chunk; the archive goes to an
// unnamed temp file and is uploaded whole at Commit.
func (u *Upload) toSpool(status int, b []byte) error {
	// Unlinked at once: nothing is left whatever ends the capture.
	f, err := os.CreateTemp(u.dir, ".amber-upload-*")
	if err == nil {
		os.Remove(f.Name())
	}
	if err != nil {
		return fmt.Errorf("registry %s refused a chunked upload (%d); spooling for one upload: %w", u.repo.RegistryStr(), status, err)
	}
	if u.msg != nil {
		u.msg(fmt.Sprintf("registry %s refused a chunked upload (%d %s): the archive is spooled in %s and uploaded whole once sealed", u.repo.RegistryStr(), status, http.StatusText(status), u.dir))
	}
	u.spool = f
	if _, err := f.Write(b); err != nil {
		return fmt.Errorf("spooling the upload: %w", err)
	}
	return nil
}

// Commit ends the upload: the blob is named by d, which the registry
// checks against the bytes it received.
func (u *Upload) Commit(d hashing.Digest) error {
	if err := u.finish(); err != nil {
		return err
	}
	var body io.Reader
	var size int64
	if u.spool != nil {
		// The refused session is left; a new one takes it whole.
		u.abandon()
		if err := u.open(); err != nil {
			return err
		}
		st, err := u.spool.Stat()
		if err != nil {
			return fmt.Errorf("spooled upload: %w", err)
		}
		size = st.Size()
		body = io.NewSectionReader(u.spool, 0, size)
	}
	l, err := url.Parse(u.loc)
	if err != nil {
		return u.fail("upload session", err)
	}
	q := l.Query()
	q.Set("digest", "sha256:"+d.Hex())
	l.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(u.ctx, http.MethodPut, l.String(), body)
	if err != nil {
		return err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := u.client.Do(req)
	if err != nil {
		return u.fail("committing the archive blob", err)
	}
	defer drain(resp)
	if err := transport.CheckError(resp, http.StatusCreated); err != nil {
		return u.fail("committing the archive blob "+d.String(), err)
	}
	u.loc = ""
	u.close()
	return nil
}

// Abort abandons the session (DELETE of its URL): the registry drops
// what it received. Safe after Commit (it does nothing then).
func (u *Upload) Abort() {
	// What is queued is dropped; a chunk in flight is finished (see do),
	// so that the session's URL is current for the DELETE.
	u.stop.Store(true)
	u.finish()
	u.abandon()
	u.close()
}

func (u *Upload) abandon() {
	if u.loc == "" {
		return
	}
	// The capture's context may be what was cancelled (Ctrl-C): the
	// DELETE gets its own, bounded.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, l := range []string{u.loc, u.first} {
		req, err := http.NewRequestWithContext(ctx, http.MethodDelete, l, nil)
		if err != nil {
			continue
		}
		resp, err := u.client.Do(req)
		if err != nil {
			continue
		}
		drain(resp)
		if resp.StatusCode/100 == 2 {
			break
		}
	}
	u.loc, u.first = "", ""
}

func (u *Upload) close() {
	if u.spool != nil {
		u.spool.Close()
		u.spool = nil
	}
}
