package bitnet

// Polling a job until it reaches a final state. Hand-written runtime.

import (
	"context"
	"fmt"
	"time"
)

// WaitOptions tune a job waiter; the zero value waits up to 10 minutes, polling after
// 250 ms, then 1.5 times longer each time, at most every 5 s.
type WaitOptions struct {
	Timeout     time.Duration
	Interval    time.Duration
	MaxInterval time.Duration
	// OnPoll is called with every state polled (progress bars).
	OnPoll func(state any)
}

// waitFor calls poll until done holds for its answer. On timeout it returns the last state
// with an error wrapping ErrWaitTimeout.
func waitFor[T any](ctx context.Context, poll func(context.Context) (T, error), done func(T) bool,
	opts *WaitOptions) (T, error) {
	o := WaitOptions{}
	if opts != nil {
		o = *opts
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Minute
	}
	if o.Interval <= 0 {
		o.Interval = 250 * time.Millisecond
	}
	if o.MaxInterval <= 0 {
		o.MaxInterval = 5 * time.Second
	}
	deadline := time.Now().Add(o.Timeout)
	interval := o.Interval
	for {
		state, err := poll(ctx)
		if err != nil {
			return state, err
		}
		if o.OnPoll != nil {
			o.OnPoll(state)
		}
		if done(state) {
			return state, nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return state, fmt.Errorf("after %s: %w", o.Timeout, ErrWaitTimeout)
		}
		if err := sleep(ctx, min(interval, left)); err != nil {
			return state, err
		}
		interval = min(o.MaxInterval, interval*3/2)
	}
}
