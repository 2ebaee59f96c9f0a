package bitnet

// Errors the client returns. Hand-written runtime.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// ErrTimeout is wrapped by errors of attempts that exceeded the client's timeout.
var ErrTimeout = errors.New("request timed out")

// ErrWaitTimeout is wrapped by a job waiter's error when the job did not finish in time.
var ErrWaitTimeout = errors.New("the job did not finish in time")

// An *APIError matches (errors.Is) the one of these its status names.
var (
	ErrBadRequest          = errors.New("bad request (400)")
	ErrAuthentication      = errors.New("authentication failed (401)")
	ErrPermissionDenied    = errors.New("permission denied (403)")
	ErrNotFound            = errors.New("not found (404)")
	ErrConflict            = errors.New("conflict (409)")
	ErrUnprocessableEntity = errors.New("unprocessable entity (422)")
	ErrRateLimit           = errors.New("rate limited (429)")
	ErrInternalServer      = errors.New("server error (5xx)")
)

var statusErrors = map[int]error{
	400: ErrBadRequest, 401: ErrAuthentication, 403: ErrPermissionDenied, 404: ErrNotFound,
	409: ErrConflict, 422: ErrUnprocessableEntity, 429: ErrRateLimit,
}

// Is reports whether target is the Err... sentinel of e's status:
// errors.Is(err, bitnet.ErrNotFound).
func (e *APIError) Is(target error) bool {
	if e.StatusCode >= 500 {
		return target == ErrInternalServer
	}
	return statusErrors[e.StatusCode] == target && target != nil
}

// ConnectionError means no answer came: the connection failed or broke, or the attempt
// timed out (then it wraps ErrTimeout). Unwrap gives the transport error.
type ConnectionError struct {
	Op  string
	Err error
}

func (e *ConnectionError) Error() string { return e.Op + ": " + e.Err.Error() }

func (e *ConnectionError) Unwrap() error { return e.Err }

// ProblemField is one invalid input named by a problem's "errors" member.
type ProblemField struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// APIError is an error answer of the API, with the Problem Details (RFC 9457) members the
// server sent. Use errors.As(err, &apiErr) to inspect it.
type APIError struct {
	// StatusCode is the HTTP status of the answer.
	StatusCode int
	Type       string
	Title      string
	// Status is the problem's own status member (normally StatusCode).
	Status   int
	Detail   string
	Instance string
	Errors   []ProblemField
	// RequestID is the server's id of the request (quote it in bug reports).
	RequestID string
	// RetryAfter comes from the Retry-After header (0 when absent).
	RetryAfter time.Duration
	Header     http.Header
	// Body is the raw answer.
	Body []byte
}

func (e *APIError) Error() string {
	title := e.Title
	if title == "" {
		title = http.StatusText(e.StatusCode)
	}
	if e.Detail != "" {
		return fmt.Sprintf("%d %s: %s", e.StatusCode, title, e.Detail)
	}
	return fmt.Sprintf("%d %s", e.StatusCode, title)
}

type problemBody struct {
	Type      string         `json:"type"`
	Title     string         `json:"title"`
	Status    int            `json:"status"`
	Detail    *string        `json:"detail"`
	Instance  string         `json:"instance"`
	Errors    []ProblemField `json:"errors"`
	RequestID string         `json:"request_id"`
}

// problemError builds an APIError from a problem document (a body or an error event).
func problemError(status int, header http.Header, body []byte) *APIError {
	e := &APIError{StatusCode: status, Header: header, Body: body, Type: "about:blank"}
	var p problemBody
	if json.Unmarshal(body, &p) == nil {
		if p.Type != "" {
			e.Type = p.Type
		}
		e.Title, e.Status, e.Instance, e.Errors, e.RequestID = p.Title, p.Status, p.Instance, p.Errors, p.RequestID
		if p.Detail != nil {
			e.Detail = *p.Detail
		}
	}
	if e.StatusCode == 0 {
		e.StatusCode = e.Status
	}
	if e.Status == 0 {
		e.Status = e.StatusCode
	}
	return e
}

func errorFromResponse(resp *http.Response) *APIError {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	e := problemError(resp.StatusCode, resp.Header, body)
	e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	if e.RequestID == "" {
		e.RequestID = resp.Header.Get("X-Request-ID") // servers also name the request in a header
	}
	return e
}
