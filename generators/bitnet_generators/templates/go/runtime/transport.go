package bitnet

// Sending a call: credentials, token refresh, per-attempt timeout, retries and error
// mapping. Hand-written runtime.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"
)

// values and header let generated code build queries and headers without its own imports.
type (
	values = url.Values
	header = http.Header
)

// call is what a generated method asks for.
type call struct {
	method            string
	path              string
	query             values
	header            header
	body              *bodySource
	secured           bool
	idempotencyHeader string
	accept            string
	options           callOptions
}

// RequestOption adjusts one call (the last arguments of every method):
// WithRequestTimeout, WithRequestHeader, WithResponseInto.
type RequestOption func(*callOptions)

type callOptions struct {
	timeout  *time.Duration
	header   http.Header
	response **http.Response
	progress func(sent, total int64)
}

// WithUploadProgress calls fn as the request body is sent (total is -1 when unknown); a
// retried upload starts again from 0.
func WithUploadProgress(fn func(sent, total int64)) RequestOption {
	return func(o *callOptions) { o.progress = fn }
}

// progressReader reports the bytes read from it.
type progressReader struct {
	r     io.Reader
	sent  int64
	total int64
	fn    func(sent, total int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.sent += int64(n)
		p.fn(p.sent, p.total)
	}
	return n, err
}

// WithRequestTimeout bounds each attempt of this call instead of the client's timeout.
func WithRequestTimeout(d time.Duration) RequestOption {
	return func(o *callOptions) { o.timeout = &d }
}

// WithRequestHeader adds a header to this call.
func WithRequestHeader(key, value string) RequestOption {
	return func(o *callOptions) {
		if o.header == nil {
			o.header = http.Header{}
		}
		o.header.Add(key, value)
	}
}

// WithResponseInto stores the raw successful *http.Response of this call in *dst (status,
// headers; the method itself reads and closes the body).
func WithResponseInto(dst **http.Response) RequestOption {
	return func(o *callOptions) { o.response = dst }
}

func callOptionsOf(opts []RequestOption) callOptions {
	var o callOptions
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// attempt is one try of a call: a context the timeout (or Close) cancels.
type attempt struct {
	ctx      context.Context
	cancel   context.CancelFunc
	timer    *time.Timer
	timedOut atomic.Bool
	resp     *http.Response
}

func newAttempt(parent context.Context, timeout time.Duration) *attempt {
	ctx, cancel := context.WithCancel(parent)
	a := &attempt{ctx: ctx, cancel: cancel}
	if timeout > 0 {
		a.timer = time.AfterFunc(timeout, func() {
			a.timedOut.Store(true)
			cancel()
		})
	}
	return a
}

// stopTimer lets a stream be read for longer than the timeout.
func (a *attempt) stopTimer() {
	if a.timer != nil {
		a.timer.Stop()
	}
}

// release ends the attempt (and any body still being read).
func (a *attempt) release() {
	a.stopTimer()
	a.cancel()
}

// wrap marks errors caused by the attempt's timeout.
func (a *attempt) wrap(cl *call, err error) error {
	if a.timedOut.Load() {
		return fmt.Errorf("%s %s: %w", cl.method, cl.path, ErrTimeout)
	}
	return err
}

var idempotentMethods = map[string]bool{"GET": true, "HEAD": true, "PUT": true, "DELETE": true, "OPTIONS": true}

// send runs the attempts of a call and returns the first 2xx answer (body unread).
func (c *Client) send(ctx context.Context, cl *call) (*attempt, error) {
	if cl.header == nil {
		cl.header = header{}
	}
	if cl.idempotencyHeader != "" && cl.header.Get(cl.idempotencyHeader) == "" {
		cl.header.Set(cl.idempotencyHeader, newIdempotencyKey()) // one key for every attempt
	}
	idempotent := idempotentMethods[cl.method] || cl.idempotencyHeader != ""
	replayable := cl.body == nil || cl.body.replayable
	refreshed := false
	for try := 0; ; try++ {
		usedToken := c.Token()
		timeout := c.timeout
		if cl.options.timeout != nil {
			timeout = *cl.options.timeout
		}
		a := newAttempt(ctx, timeout)
		req, err := c.request(a.ctx, cl, usedToken)
		if err != nil {
			a.release()
			return nil, err
		}
		resp, err := c.httpClient.Do(req)
		if err != nil {
			a.release()
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			err = a.wrap(cl, err)
			if try < c.retry.MaxRetries && idempotent && replayable {
				if serr := sleep(ctx, c.retry.backoff(try)); serr != nil {
					return nil, serr
				}
				continue
			}
			return nil, &ConnectionError{Op: cl.method + " " + cl.path, Err: err}
		}
		if resp.StatusCode >= 200 && resp.StatusCode < 300 {
			a.resp = resp
			if cl.options.response != nil {
				*cl.options.response = resp
			}
			return a, nil
		}
		apiErr := errorFromResponse(resp)
		resp.Body.Close()
		a.release()
		if resp.StatusCode == http.StatusUnauthorized && cl.secured && !refreshed && c.canRefresh() {
			refreshed = true
			if c.refresh(ctx, usedToken) {
				try-- // the retry after a refresh is not a backoff retry
				continue
			}
			return nil, apiErr
		}
		wait := apiErr.RetryAfter
		if wait == 0 {
			wait = c.retry.backoff(try)
		}
		if try < c.retry.MaxRetries && replayable && retryableStatus(resp.StatusCode, idempotent) &&
			wait <= c.retry.MaxRetryAfter {
			if serr := sleep(ctx, wait); serr != nil {
				return nil, serr
			}
			continue
		}
		return nil, apiErr
	}
}

func (c *Client) request(ctx context.Context, cl *call, token string) (*http.Request, error) {
	target := c.root + cl.path
	if len(cl.query) > 0 {
		target += "?" + cl.query.Encode()
	}
	var body io.Reader
	length := int64(0)
	if cl.body != nil {
		r, err := cl.body.open()
		if err != nil {
			return nil, err
		}
		if cl.options.progress != nil {
			r = &progressReader{r: r, total: cl.body.length, fn: cl.options.progress}
		}
		body, length = io.NopCloser(r), cl.body.length // NopCloser: never close the caller's file
	}
	req, err := http.NewRequestWithContext(ctx, cl.method, target, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", apiUserAgent)
	for k, v := range c.header {
		req.Header[k] = append([]string(nil), v...)
	}
	accept := cl.accept
	if accept == "" {
		accept = "application/json"
	}
	req.Header.Set("Accept", accept)
	if cl.secured {
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		} else if c.apiKey != "" && apiKeyHeader != "" {
			req.Header.Set(apiKeyHeader, c.apiKey)
		}
	}
	for k, v := range cl.header {
		req.Header[k] = append([]string(nil), v...)
	}
	for k, v := range cl.options.header {
		req.Header[k] = append([]string(nil), v...)
	}
	if cl.body != nil {
		req.Header.Set("Content-Type", cl.body.contentType)
		if length >= 0 {
			req.ContentLength = length
		} else {
			req.ContentLength = -1 // unknown: sent chunked
		}
	}
	return req, nil
}

func (c *Client) canRefresh() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.refreshToken != "" && apiRefreshPath != ""
}

// refresh exchanges the refresh token once for all calls that got a 401 with usedToken.
func (c *Client) refresh(ctx context.Context, usedToken string) bool {
	c.refreshMu.Lock()
	defer c.refreshMu.Unlock()
	c.mu.Lock()
	current, refreshToken := c.token, c.refreshToken
	c.mu.Unlock()
	if current != usedToken {
		return true // another call refreshed meanwhile
	}
	body, err := json.Marshal(map[string]string{"refresh_token": refreshToken})
	if err != nil {
		return false
	}
	a := newAttempt(ctx, c.timeout)
	defer a.release()
	req, err := http.NewRequestWithContext(a.ctx, "POST", c.root+apiRefreshPath, bytes.NewReader(body))
	if err != nil {
		return false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := c.httpClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		return false
	}
	var tokens struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		ExpiresIn    int    `json:"expires_in"`
	}
	if json.NewDecoder(resp.Body).Decode(&tokens) != nil || tokens.AccessToken == "" {
		return false
	}
	c.SetTokens(tokens.AccessToken, tokens.RefreshToken)
	if c.onTokens != nil {
		c.onTokens(Tokens{AccessToken: tokens.AccessToken, RefreshToken: c.refreshTokenNow(), ExpiresIn: tokens.ExpiresIn})
	}
	return true
}

func (c *Client) refreshTokenNow() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.refreshToken
}

// doJSON sends a call and decodes its JSON answer into out.
func (c *Client) doJSON(ctx context.Context, cl *call, out any) error {
	a, err := c.send(ctx, cl)
	if err != nil {
		return err
	}
	defer a.release()
	defer a.resp.Body.Close()
	if err := json.NewDecoder(a.resp.Body).Decode(out); err != nil {
		return a.wrap(cl, fmt.Errorf("%s %s: decoding the answer: %w", cl.method, cl.path, err))
	}
	return nil
}

// doNone sends a call whose answer has no body.
func (c *Client) doNone(ctx context.Context, cl *call) error {
	a, err := c.send(ctx, cl)
	if err != nil {
		return err
	}
	defer a.release()
	_, err = io.Copy(io.Discard, a.resp.Body)
	a.resp.Body.Close()
	return a.wrap(cl, err)
}

// doText sends a call and returns its answer as text.
func (c *Client) doText(ctx context.Context, cl *call) (string, error) {
	a, err := c.send(ctx, cl)
	if err != nil {
		return "", err
	}
	defer a.release()
	defer a.resp.Body.Close()
	data, err := io.ReadAll(a.resp.Body)
	return string(data), a.wrap(cl, err)
}

// doRaw sends a call and returns its body unread; closing it ends the call.
func (c *Client) doRaw(ctx context.Context, cl *call) (io.ReadCloser, error) {
	if cl.accept == "" {
		cl.accept = "*/*"
	}
	a, err := c.send(ctx, cl)
	if err != nil {
		return nil, err
	}
	a.stopTimer()
	return &releasingBody{ReadCloser: a.resp.Body, release: a.release}, nil
}

type releasingBody struct {
	io.ReadCloser
	release func()
}

func (b *releasingBody) Close() error {
	err := b.ReadCloser.Close()
	b.release()
	return err
}

var errNotReplayable = errors.New("the request body was already sent and cannot be sent again")
