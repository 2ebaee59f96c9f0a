// Tests of the generated Go SDK's runtime, copied into the generated package by
// tests/generators/test_go.py and run with `go test`. Each test talks HTTP to a real
// httptest server.
package bitnet

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"
)

const jobJSON = `{"id":"job_0123456789","kind":"quantize","status":"%s","progress":0,"model_id":"mdl_0123456789",
"created_at":"2025-04-01T12:00:00Z","started_at":null,"finished_at":null,"attempts":0,"cancel_requested":false,
"links":{"self":"s","cancel":"c"}}`

func problem(w http.ResponseWriter, status int, retryAfter string) {
	if retryAfter != "" {
		w.Header().Set("Retry-After", retryAfter)
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"type":"about:blank","title":"Oops","status":%d,"detail":"went wrong","request_id":"req_1",
"errors":[{"field":"a","message":"b"}]}`, status)
}

func fastRetry() Option {
	return WithRetry(RetryPolicy{MaxRetries: 3, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond,
		MaxRetryAfter: time.Second})
}

func TestJobCreatingPostIsRetriedWithOneIdempotencyKey(t *testing.T) {
	var keys []string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		n := len(keys)
		mu.Unlock()
		if r.URL.Path != "/v1/quantize" || r.Header.Get("Authorization") != "Bearer t0" {
			t.Errorf("unexpected request %s %v", r.URL.Path, r.Header)
		}
		if n < 3 {
			problem(w, 503, "")
			return
		}
		w.WriteHeader(202)
		fmt.Fprintf(w, jobJSON, "queued")
	}))
	defer srv.Close()
	c := NewClient(srv.URL, WithToken("t0"), fastRetry())
	job, err := c.QuantizeModel(context.Background(), QuantizeRequest{ModelID: "mdl_0123456789", Qtype: QuantTypeTq20}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if job.ID != "job_0123456789" || len(keys) != 3 || keys[0] == "" || keys[0] != keys[1] || keys[1] != keys[2] {
		t.Fatalf("job %v, keys %q", job.ID, keys)
	}
}

func TestPlainPostIsNotRetriedOn500(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.Header.Get("X-API-Key") != "k" {
			t.Errorf("API key header missing: %v", r.Header)
		}
		problem(w, 500, "")
	}))
	defer srv.Close()
	_, err := NewClient(srv.URL, WithAPIKey("k"), fastRetry()).CreateAPIKey(context.Background(), APIKeyCreate{Name: "x"})
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 500 || calls.Load() != 1 {
		t.Fatalf("err %v, calls %d", err, calls.Load())
	}
}

func TestLongRetryAfterIsReturnedAtOnceWithTheProblem(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		problem(w, 429, "3600")
	}))
	defer srv.Close()
	_, err := NewClient(srv.URL, WithToken("t"), fastRetry()).GetAccount(context.Background())
	var apiErr *APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("want *APIError, got %v", err)
	}
	got := fmt.Sprintf("%d|%s|%s|%s|%s|%v", apiErr.StatusCode, apiErr.Title, apiErr.Detail, apiErr.RequestID,
		apiErr.RetryAfter, apiErr.Errors)
	if got != "429|Oops|went wrong|req_1|1h0m0s|[{a b}]" || calls.Load() != 1 {
		t.Fatalf("got %q after %d calls", got, calls.Load())
	}
}

func TestUnauthorizedRefreshesOnceForConcurrentCalls(t *testing.T) {
	var refreshes atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/auth/refresh":
			refreshes.Add(1)
			var body map[string]string
			if err := json.NewDecoder(r.Body).Decode(&body); err != nil || len(body) != 1 || body["refresh_token"] != "r0" ||
				r.Header.Get("Content-Type") != "application/json" {
				t.Errorf("bad refresh body %v (%v)", body, err)
			}
			time.Sleep(20 * time.Millisecond) // let the other calls queue behind this refresh
			fmt.Fprint(w, `{"access_token":"t1","refresh_token":"r1","token_type":"Bearer","expires_in":900,"refresh_expires_in":9,"scope":""}`)
		case "/v1/auth/me":
			if r.Header.Get("Authorization") != "Bearer t1" {
				problem(w, 401, "")
				return
			}
			fmt.Fprint(w, `{"id":"usr_0123456789","email":"a@example.com","tier":"developer","is_admin":false,
"created_at":"2025-04-01T12:00:00Z","credential_type":"access_token","scopes":[]}`)
		}
	}))
	defer srv.Close()
	var seen atomic.Int32
	c := NewClient(srv.URL, WithToken("t0"), WithRefreshToken("r0"), WithOnTokens(func(tok Tokens) {
		if tok.AccessToken != "t1" || tok.RefreshToken != "r1" {
			t.Errorf("tokens %+v", tok)
		}
		seen.Add(1)
	}))
	var wg sync.WaitGroup
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if me, err := c.GetCurrentUser(context.Background()); err != nil || me.Email != "a@example.com" {
				t.Errorf("me %v, err %v", me, err)
			}
		}()
	}
	wg.Wait()
	if refreshes.Load() != 1 || seen.Load() != 1 || c.Token() != "t1" {
		t.Fatalf("refreshes %d, callbacks %d, token %q", refreshes.Load(), seen.Load(), c.Token())
	}
}

func TestSSELinesAndEventsSplitAnywhere(t *testing.T) {
	wire := "\ufeff: keep-alive\r\nevent: token\r\nid: 7\r\ndata: a\r\ndata: b\r\n\r\nevent: x\n\ndata: c\r\rdata: d\n\n"
	scanner := bufio.NewScanner(iotest.OneByteReader(strings.NewReader(wire)))
	scanner.Split(splitLines)
	var parser sseParser
	var got []string
	for scanner.Scan() {
		if msg, ok := parser.line(scanner.Text()); ok {
			got = append(got, msg.Event+"|"+msg.ID+"|"+msg.Data)
		}
	}
	want := "token|7|a\nb message|7|c message|7|d"
	if strings.Join(got, " ") != want {
		t.Fatalf("got %q, want %q", strings.Join(got, " "), want)
	}
}

func TestStreamDeliversEachEventBeforeTheNextIsSent(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "event: token\nid: 0\ndata: {\"index\":0,\"token_id\":5,\"text\":\" Pa\",\"logprob\":null}\n\n")
		w.(http.Flusher).Flush()
		<-release // the second event is only written once the client has the first
		fmt.Fprint(w, "event: error\ndata: {\"title\":\"Gone\",\"status\":503}\n\n")
	}))
	defer srv.Close()
	stream, err := NewClient(srv.URL, WithToken("t")).StreamInference(context.Background(), InferenceRequest{Model: "m"})
	if err != nil {
		t.Fatal(err)
	}
	first := <-stream.Events()
	if first.Event != "token" || first.ID != "0" || first.Token == nil || first.Token.Text != " Pa" {
		t.Fatalf("first event %+v", first)
	}
	close(release)
	for range stream.Events() {
		t.Fatal("no event expected after the error")
	}
	var apiErr *APIError
	if !errors.As(stream.Err(), &apiErr) || apiErr.StatusCode != 503 || apiErr.Title != "Gone" {
		t.Fatalf("stream error %v", stream.Err())
	}
}

func TestPaginationFollowsNextCursor(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		item := `{"id":"%s","name":"k","prefix":"p","scopes":[],"created_at":"2025-04-01T12:00:00Z","last_used_at":null,"expires_at":null}`
		switch r.URL.Query().Get("cursor") {
		case "":
			fmt.Fprintf(w, `{"data":[`+item+`,`+item+`],"next_cursor":"c2"}`, "a", "b")
		case "c2":
			fmt.Fprintf(w, `{"data":[`+item+`],"next_cursor":null}`, "c")
		}
	}))
	defer srv.Close()
	var ids []string
	for key, err := range NewClient(srv.URL).ListAPIKeysAll(context.Background(), &ListAPIKeysParams{Limit: Ptr(2)}) {
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, key.ID)
	}
	if strings.Join(ids, ",") != "a,b,c" {
		t.Fatalf("ids %v", ids)
	}
}

func TestWaiterPollsUntilFinalOrTimesOut(t *testing.T) {
	var polls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status := "running"
		if polls.Add(1) == 3 || strings.HasSuffix(r.URL.Path, "done") {
			status = "succeeded"
		}
		if strings.HasSuffix(r.URL.Path, "never") {
			status = "queued"
		}
		fmt.Fprintf(w, jobJSON, status)
	}))
	defer srv.Close()
	c := NewClient(srv.URL)
	job, err := c.WaitForQuantizeJob(context.Background(), "job_x", &WaitOptions{Interval: time.Millisecond})
	if err != nil || job.Status != JobStatusSucceeded || polls.Load() != 3 {
		t.Fatalf("job %v err %v polls %d", job, err, polls.Load())
	}
	job, err = c.WaitForQuantizeJob(context.Background(), "never", &WaitOptions{Timeout: 30 * time.Millisecond,
		Interval: 5 * time.Millisecond})
	if !errors.Is(err, ErrWaitTimeout) || job == nil || job.Status != JobStatusQueued {
		t.Fatalf("job %v err %v", job, err)
	}
}

func TestRawUploadSendsTheLengthAndRewindsForARetry(t *testing.T) {
	data := []byte(strings.Repeat("0123456789abcdef", 20000))
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	var bodies [][]byte
	var lengths []int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		bodies, lengths = append(bodies, body), append(lengths, r.ContentLength)
		if len(bodies) == 1 {
			problem(w, 503, "0")
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"id": "mdl_0123456789", "name": "m", "status": "ready",
			"tags": []string{}, "public": false, "created_at": "2025-04-01T12:00:00Z", "updated_at": "2025-04-01T12:00:00Z",
			"links": map[string]string{"self": "s", "file": "f", "metadata": "m", "validation": "v"}})
	}))
	defer srv.Close()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var sent []int64
	progress := WithUploadProgress(func(n, total int64) {
		if total != int64(len(data)) {
			t.Errorf("total %d", total)
		}
		sent = append(sent, n)
	})
	model, err := NewClient(srv.URL, fastRetry()).UploadModelFile(context.Background(), "mdl_0123456789", f, nil, progress)
	if err != nil || model.Status != ModelStatusReady {
		t.Fatalf("model %v err %v", model, err)
	}
	full := 0
	for i, n := range sent {
		if n == int64(len(data)) {
			full++
		} else if i > 0 && n < sent[i-1] && sent[i-1] != int64(len(data)) {
			t.Fatalf("progress went back mid-attempt: %v", sent)
		}
	}
	if full != 2 || sent[len(sent)-1] != int64(len(data)) {
		t.Fatalf("progress %v: want the full size once per attempt", sent)
	}
	if len(bodies) != 2 || string(bodies[0]) != string(data) || string(bodies[1]) != string(data) ||
		lengths[0] != int64(len(data)) || lengths[1] != int64(len(data)) {
		t.Fatalf("%d attempts, lengths %v", len(bodies), lengths)
	}
}

func TestTimeoutIsReportedAsErrTimeout(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(2 * time.Second):
		}
	}))
	defer srv.Close()
	_, err := NewClient(srv.URL, WithTimeout(50*time.Millisecond), WithRetry(NoRetry)).GetVersion(context.Background())
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("want ErrTimeout, got %v", err)
	}
}

func TestErrorAnswersMatchTheirStatusSentinel(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var status int
		fmt.Sscanf(strings.TrimPrefix(r.URL.Path, "/v1/models/mdl_"), "%d", &status)
		problem(w, status, "3600")
	}))
	defer srv.Close()
	want := map[int]error{400: ErrBadRequest, 401: ErrAuthentication, 403: ErrPermissionDenied, 404: ErrNotFound,
		409: ErrConflict, 422: ErrUnprocessableEntity, 429: ErrRateLimit, 500: ErrInternalServer, 503: ErrInternalServer}
	c := NewClient(srv.URL, WithToken("t"), WithRetry(NoRetry))
	for status, sentinel := range want {
		_, err := c.GetModel(context.Background(), fmt.Sprintf("mdl_%d", status))
		var apiErr *APIError
		if !errors.As(err, &apiErr) || apiErr.StatusCode != status || !errors.Is(err, sentinel) {
			t.Fatalf("%d: got %v", status, err)
		}
		for _, other := range want {
			if other != sentinel && errors.Is(err, other) {
				t.Fatalf("%d also matches %v", status, other)
			}
		}
	}
}

func TestRefusedConnectionIsAConnectionError(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there now
	_, err := NewClient(url, WithRetry(NoRetry)).GetVersion(context.Background())
	var connErr *ConnectionError
	if !errors.As(err, &connErr) || connErr.Unwrap() == nil || errors.Is(err, ErrTimeout) {
		t.Fatalf("want a ConnectionError, got %T %v", err, err)
	}
}

func TestEnvironmentUserAgentPerCallOptionsAndRawResponse(t *testing.T) {
	var seen []*http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r)
		if r.Header.Get("X-Slow") != "" {
			<-r.Context().Done()
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Request-ID", "req_raw")
		fmt.Fprint(w, `{"version":"1","api_version":"1","python":"3","backends":[]}`)
	}))
	defer srv.Close()
	t.Setenv("BITNET_BASE_URL", srv.URL)
	t.Setenv("BITNET_API_KEY", "bn_env")
	c := NewClient("", WithTimeout(time.Minute), WithRetry(NoRetry))
	var raw *http.Response
	if _, err := c.GetAccount(context.Background(), WithRequestHeader("X-Trace", "1"), WithResponseInto(&raw)); err != nil {
		t.Fatal(err)
	}
	r := seen[0]
	if r.URL.Path != "/v1/account" || r.Header.Get("X-API-Key") != "bn_env" || r.Header.Get("X-Trace") != "1" ||
		!strings.HasPrefix(r.Header.Get("User-Agent"), "bitnet-client-go/") {
		t.Fatalf("request %s %v", r.URL.Path, r.Header)
	}
	if raw == nil || raw.StatusCode != 200 || raw.Header.Get("X-Request-ID") != "req_raw" {
		t.Fatalf("raw response %v", raw)
	}
	_, err := c.GetVersion(context.Background(), WithRequestTimeout(50*time.Millisecond), WithRequestHeader("X-Slow", "1"))
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("the per-call timeout did not apply: %v", err)
	}
}

func TestJobResultIsAbsentUntilThereIsOneThenDecodesAsItsModel(t *testing.T) {
	var pending Job
	if err := json.Unmarshal([]byte(fmt.Sprintf(jobJSON, "running")), &pending); err != nil {
		t.Fatal(err)
	}
	if pending.Result != nil {
		t.Fatalf("a job without a result has Result %v", pending.Result)
	}
	done := strings.Replace(fmt.Sprintf(jobJSON, "succeeded"), `"links"`,
		`"result":{"model_id":"mdl_out","source_model_id":"mdl_0123456789","qtype":"tq2_0","size_bytes":7,`+
			`"source_size_bytes":9,"bits_per_weight":2.1,"tensors_quantized":3,"tensors_kept":1,"duration_ms":5},"links"`, 1)
	var job Job
	if err := json.Unmarshal([]byte(done), &job); err != nil {
		t.Fatal(err)
	}
	if job.Result == nil {
		t.Fatal("the result was dropped")
	}
	result, err := job.Result.AsQuantizeResult()
	if err != nil || result.ModelID != "mdl_out" || result.Qtype != "tq2_0" || result.TensorsQuantized != 3 {
		t.Fatalf("AsQuantizeResult = %+v, %v", result, err)
	}
	again, err := json.Marshal(job)
	if err != nil || !strings.Contains(string(again), `"result":{"model_id":"mdl_out"`) {
		t.Fatalf("re-encoded job = %s, %v", again, err)
	}
	wrapped, err := JobResultFromInferenceBatchResult(InferenceBatchResult{Succeeded: 2})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := wrapped.AsInferenceBatchResult()
	if err != nil || batch.Succeeded != 2 {
		t.Fatalf("AsInferenceBatchResult = %+v, %v", batch, err)
	}
}
