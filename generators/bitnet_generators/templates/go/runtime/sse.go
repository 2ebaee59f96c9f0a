package bitnet

// Server-Sent Events (WHATWG HTML, "event stream interpretation"), parsed as the bytes
// arrive and delivered on a channel. Hand-written runtime.

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// sseMessage is one dispatched event.
type sseMessage struct {
	Event string
	Data  string
	ID    string
	Retry int
}

type sseParser struct {
	data    []string
	event   string
	lastID  string
	retry   int
	started bool
}

// line handles one line; a blank line dispatches the event gathered so far.
func (p *sseParser) line(line string) (sseMessage, bool) {
	if !p.started {
		p.started = true
		line = strings.TrimPrefix(line, "\ufeff")
	}
	if line == "" {
		msg := sseMessage{Event: p.event, Data: strings.Join(p.data, "\n"), ID: p.lastID, Retry: p.retry}
		ok := len(p.data) > 0
		if msg.Event == "" {
			msg.Event = "message"
		}
		p.data, p.event = nil, ""
		return msg, ok
	}
	if strings.HasPrefix(line, ":") {
		return sseMessage{}, false
	}
	field, value, found := strings.Cut(line, ":")
	if found {
		value = strings.TrimPrefix(value, " ")
	}
	switch field {
	case "event":
		p.event = value
	case "data":
		p.data = append(p.data, value)
	case "id":
		if !strings.Contains(value, "\x00") {
			p.lastID = value
		}
	case "retry":
		if n, err := strconv.Atoi(value); err == nil && n >= 0 {
			p.retry = n
		}
	}
	return sseMessage{}, false
}

// splitLines splits on CRLF, LF or CR, waiting for more input after a final CR.
func splitLines(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
		if data[i] == '\n' {
			return i + 1, data[:i], nil
		}
		if i+1 < len(data) {
			if data[i+1] == '\n' {
				return i + 2, data[:i], nil
			}
			return i + 1, data[:i], nil
		}
		if atEOF {
			return i + 1, data[:i], nil
		}
		return 0, nil, nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

// EventStream delivers the events of one streaming call. Read Events until it is closed,
// then check Err; Close stops early (and cancels the call on the server).
type EventStream[T any] struct {
	events  chan T
	stop    chan struct{}
	done    chan struct{}
	release func()
	mu      sync.Mutex
	err     error
	once    sync.Once
}

// Events is closed after the last event, an error, or Close.
func (s *EventStream[T]) Events() <-chan T { return s.events }

// Err is why the stream ended (nil for a normal end or Close); call it once Events is closed.
func (s *EventStream[T]) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close ends the stream and waits for its reader to stop.
func (s *EventStream[T]) Close() error {
	s.once.Do(func() {
		close(s.stop)
		s.release()
	})
	<-s.done
	return nil
}

func (s *EventStream[T]) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.stop: // closed by the caller: not an error
	default:
		s.err = err
	}
}

// openEventStream sends a call answering text/event-stream. Events named in errorEvents
// end the stream with an *APIError; decode turns the others into T (false: skip it).
func openEventStream[T any](ctx context.Context, c *Client, cl *call, errorEvents []string,
	decode func(msg sseMessage) (T, bool, error)) (*EventStream[T], error) {
	cl.accept = "text/event-stream"
	a, err := c.send(ctx, cl)
	if err != nil {
		return nil, err
	}
	a.stopTimer()
	s := &EventStream[T]{events: make(chan T), stop: make(chan struct{}), done: make(chan struct{}),
		release: func() { a.release(); a.resp.Body.Close() }}
	go s.run(ctx, a.resp, errorEvents, decode)
	return s, nil
}

func (s *EventStream[T]) run(ctx context.Context, resp *http.Response, errorEvents []string,
	decode func(msg sseMessage) (T, bool, error)) {
	defer close(s.done)
	defer close(s.events)
	defer s.release() // ends the call: body closed, attempt context cancelled
	scanner := bufio.NewScanner(resp.Body)
	scanner.Buffer(make([]byte, 0, 64*1024), 16<<20)
	scanner.Split(splitLines)
	var parser sseParser
	for scanner.Scan() {
		msg, ok := parser.line(scanner.Text())
		if !ok {
			continue
		}
		if slices.Contains(errorEvents, msg.Event) {
			s.fail(problemError(0, resp.Header, []byte(msg.Data)))
			return
		}
		event, known, err := decode(msg)
		if err != nil {
			s.fail(err)
			return
		}
		if !known {
			continue
		}
		select {
		case s.events <- event:
		case <-s.stop:
			return
		case <-ctx.Done():
			s.fail(ctx.Err())
			return
		}
	}
	if err := scanner.Err(); err != nil {
		s.fail(err)
	}
}
