package bitnet

// Retry policy: exponential backoff with jitter, honouring Retry-After. Hand-written runtime.

import (
	"context"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// RetryPolicy says how failed attempts are retried.
type RetryPolicy struct {
	// MaxRetries after the first attempt.
	MaxRetries int
	// BaseDelay before the first retry; it doubles each time, up to MaxDelay.
	BaseDelay time.Duration
	MaxDelay  time.Duration
	// MaxRetryAfter: a longer Retry-After is not waited for; the error is returned at once.
	MaxRetryAfter time.Duration
}

// NoRetry turns retries off.
var NoRetry = RetryPolicy{}

// DefaultRetryPolicy: 3 retries, 250 ms doubling up to 8 s, Retry-After up to 60 s.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{MaxRetries: 3, BaseDelay: 250 * time.Millisecond, MaxDelay: 8 * time.Second,
		MaxRetryAfter: 60 * time.Second}
}

// backoff before retry number attempt (0-based): half fixed, half random ("equal jitter").
func (p RetryPolicy) backoff(attempt int) time.Duration {
	ceiling := p.BaseDelay << attempt
	if ceiling > p.MaxDelay || ceiling <= 0 {
		ceiling = p.MaxDelay
	}
	half := ceiling / 2
	if half <= 0 {
		return ceiling
	}
	return half + rand.N(half)
}

// retryableStatus: 429 and 503 mean the server did not take the work and are retried for
// every request; other 5xx (and 408) only when repeating the request is safe.
func retryableStatus(status int, idempotent bool) bool {
	switch status {
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		return true
	case http.StatusRequestTimeout, http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusGatewayTimeout:
		return idempotent
	}
	return false
}

// parseRetryAfter reads delta-seconds or an HTTP date; 0 when absent or unreadable.
func parseRetryAfter(value string, now time.Time) time.Duration {
	value = strings.TrimSpace(value)
	if value == "" {
		return 0
	}
	if secs, err := strconv.Atoi(value); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second
	}
	if when, err := http.ParseTime(value); err == nil && when.After(now) {
		return when.Sub(now)
	}
	return 0
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
