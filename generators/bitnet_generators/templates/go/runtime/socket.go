package bitnet

// The WebSocket client: token streaming and job progress over one connection. Hand-written
// runtime: the client side of RFC 6455 on the standard library (text frames, fragments,
// ping/pong, close), enough for this API's JSON messages.

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// maxSocketMessage bounds one server message.
const maxSocketMessage = 16 << 20

// SocketMessage is one server message (WsServerMessage). Type is ready, token, done,
// progress or error; Text is set on token and done messages; Decode reads the rest.
type SocketMessage struct {
	Type      string          `json:"type"`
	RequestID *string         `json:"request_id"`
	Text      string          `json:"text"`
	Raw       json.RawMessage `json:"-"`
}

// Decode unmarshals the whole message into v (e.g. a struct with UserID for ready).
func (m SocketMessage) Decode(v any) error { return json.Unmarshal(m.Raw, v) }

// InferenceSocket is one authenticated WebSocket. Ready is the server's greeting. Send and
// the reading methods may be used from different goroutines; read from one at a time.
type InferenceSocket struct {
	Ready  SocketMessage
	conn   net.Conn
	reader *bufio.Reader
	wmu    sync.Mutex
	inbox  []SocketMessage
	nextID int
}

// connectSocket opens path under the API's root and authenticates with the client's credential.
func (c *Client) connectSocket(ctx context.Context, path string) (*InferenceSocket, error) {
	target, err := url.Parse(c.root + path)
	if err != nil {
		return nil, err
	}
	host := target.Host
	if target.Port() == "" {
		port := "80"
		if target.Scheme == "https" {
			port = "443"
		}
		host = net.JoinHostPort(target.Hostname(), port)
	}
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, &ConnectionError{Op: "WebSocket " + path, Err: err}
	}
	if target.Scheme == "https" {
		tlsConn := tls.Client(conn, &tls.Config{ServerName: target.Hostname()})
		if err := tlsConn.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, &ConnectionError{Op: "WebSocket " + path, Err: err}
		}
		conn = tlsConn
	}
	s := &InferenceSocket{conn: conn, reader: bufio.NewReader(conn)}
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetDeadline(deadline)
	}
	if err := s.handshake(target); err != nil {
		conn.Close()
		return nil, err
	}
	credential := c.Token()
	if credential == "" {
		credential = c.apiKey
	}
	if err := s.Send(map[string]string{"type": "auth", "token": credential}); err != nil {
		conn.Close()
		return nil, err
	}
	ready, err := s.take(func(m SocketMessage) bool { return m.Type == "ready" })
	if err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	s.Ready = ready
	return s, nil
}

func (s *InferenceSocket) handshake(target *url.URL) error {
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	key := base64.StdEncoding.EncodeToString(nonce)
	req := &http.Request{Method: "GET", URL: target, Host: target.Host, Header: http.Header{
		"Upgrade": {"websocket"}, "Connection": {"Upgrade"}, "Sec-WebSocket-Key": {key},
		"Sec-WebSocket-Version": {"13"}, "User-Agent": {apiUserAgent},
	}}
	if err := req.Write(s.conn); err != nil {
		return &ConnectionError{Op: "WebSocket handshake", Err: err}
	}
	resp, err := http.ReadResponse(s.reader, req)
	if err != nil {
		return &ConnectionError{Op: "WebSocket handshake", Err: err}
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer resp.Body.Close()
		return errorFromResponse(resp)
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) {
		return errors.New("WebSocket handshake: wrong Sec-WebSocket-Accept")
	}
	return nil
}

// Send writes one client message (WsClientMessage) as JSON.
func (s *InferenceSocket) Send(message any) error {
	data, err := json.Marshal(message)
	if err != nil {
		return err
	}
	return s.writeFrame(0x1, data)
}

// Next returns the next server message not taken by a running Generate.
func (s *InferenceSocket) Next() (SocketMessage, error) {
	return s.take(func(SocketMessage) bool { return true })
}

// Generate runs an InferenceRequest: it yields its token messages, then done. An error
// message for it is yielded as an *APIError (and ends the sequence); stopping early cancels
// the generation. Messages of other requests and jobs are kept for Next.
func (s *InferenceSocket) Generate(request any, requestID string) iter.Seq2[SocketMessage, error] {
	return func(yield func(SocketMessage, error) bool) {
		if requestID == "" {
			s.nextID++
			requestID = fmt.Sprintf("r%d", s.nextID)
		}
		if err := s.Send(map[string]any{"type": "generate", "request_id": requestID, "request": request}); err != nil {
			yield(SocketMessage{}, err)
			return
		}
		for {
			m, err := s.take(func(m SocketMessage) bool {
				return m.RequestID != nil && *m.RequestID == requestID &&
					(m.Type == "token" || m.Type == "done" || m.Type == "error")
			})
			if err != nil {
				yield(SocketMessage{}, err)
				return
			}
			if m.Type == "error" {
				var body struct {
					Error json.RawMessage `json:"error"`
				}
				_ = m.Decode(&body)
				yield(m, problemError(0, nil, body.Error))
				return
			}
			if !yield(m, nil) {
				if m.Type != "done" {
					_ = s.Send(map[string]string{"type": "cancel", "request_id": requestID})
				}
				return
			}
			if m.Type == "done" {
				return
			}
		}
	}
}

// Subscribe asks for progress messages (with the job) whenever the job changes.
func (s *InferenceSocket) Subscribe(jobID string) error {
	return s.Send(map[string]string{"type": "subscribe", "job_id": jobID})
}

// Unsubscribe stops the progress messages of a job.
func (s *InferenceSocket) Unsubscribe(jobID string) error {
	return s.Send(map[string]string{"type": "unsubscribe", "job_id": jobID})
}

// Close says goodbye (close code 1000) and closes the connection.
func (s *InferenceSocket) Close() error {
	_ = s.writeFrame(0x8, []byte{0x03, 0xE8})
	return s.conn.Close()
}

func (s *InferenceSocket) take(match func(SocketMessage) bool) (SocketMessage, error) {
	for i, m := range s.inbox {
		if match(m) {
			s.inbox = append(s.inbox[:i], s.inbox[i+1:]...)
			return m, nil
		}
	}
	for {
		data, err := s.readMessage()
		if err != nil {
			return SocketMessage{}, err
		}
		var m SocketMessage
		if err := json.Unmarshal(data, &m); err != nil {
			return SocketMessage{}, fmt.Errorf("WebSocket message: %w", err)
		}
		m.Raw = data
		if match(m) {
			return m, nil
		}
		s.inbox = append(s.inbox, m)
	}
}

// readMessage reads frames until one whole text message, answering pings on the way.
func (s *InferenceSocket) readMessage() ([]byte, error) {
	var message []byte
	for {
		fin, opcode, payload, err := s.readFrame()
		if err != nil {
			return nil, &ConnectionError{Op: "WebSocket read", Err: err}
		}
		switch opcode {
		case 0x8: // close
			code, reason := 1005, ""
			if len(payload) >= 2 {
				code, reason = int(binary.BigEndian.Uint16(payload)), string(payload[2:])
			}
			s.conn.Close()
			return nil, socketClosed(code, reason)
		case 0x9: // ping
			if err := s.writeFrame(0xA, payload); err != nil {
				return nil, err
			}
			continue
		case 0xA: // pong
			continue
		}
		message = append(message, payload...)
		if len(message) > maxSocketMessage {
			return nil, errors.New("WebSocket message too large")
		}
		if fin {
			return message, nil
		}
	}
}

func (s *InferenceSocket) readFrame() (fin bool, opcode byte, payload []byte, err error) {
	var head [2]byte
	if _, err = io.ReadFull(s.reader, head[:]); err != nil {
		return
	}
	fin, opcode = head[0]&0x80 != 0, head[0]&0x0F
	length := uint64(head[1] & 0x7F)
	switch length {
	case 126:
		var ext [2]byte
		if _, err = io.ReadFull(s.reader, ext[:]); err != nil {
			return
		}
		length = uint64(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		if _, err = io.ReadFull(s.reader, ext[:]); err != nil {
			return
		}
		length = binary.BigEndian.Uint64(ext[:])
	}
	if length > maxSocketMessage {
		return false, 0, nil, errors.New("WebSocket frame too large")
	}
	var mask [4]byte
	masked := head[1]&0x80 != 0
	if masked {
		if _, err = io.ReadFull(s.reader, mask[:]); err != nil {
			return
		}
	}
	payload = make([]byte, length)
	if _, err = io.ReadFull(s.reader, payload); err != nil {
		return
	}
	if masked {
		for i := range payload {
			payload[i] ^= mask[i%4]
		}
	}
	return
}

// writeFrame sends one final, masked frame (clients must mask).
func (s *InferenceSocket) writeFrame(opcode byte, payload []byte) error {
	frame := []byte{0x80 | opcode}
	switch n := len(payload); {
	case n < 126:
		frame = append(frame, 0x80|byte(n))
	case n <= 0xFFFF:
		frame = append(frame, 0x80|126, byte(n>>8), byte(n))
	default:
		frame = append(frame, 0x80|127)
		frame = binary.BigEndian.AppendUint64(frame, uint64(n))
	}
	var mask [4]byte
	if _, err := rand.Read(mask[:]); err != nil {
		return err
	}
	frame = append(frame, mask[:]...)
	for i, b := range payload {
		frame = append(frame, b^mask[i%4])
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_, err := s.conn.Write(frame)
	return err
}

// socketClosed is the error for a connection the server closed: 4401, 4403 and 4429 carry
// the HTTP status they stand for, so errors.Is(err, ErrAuthentication) and the like work.
func socketClosed(code int, reason string) error {
	status := map[int]int{4401: 401, 4403: 403, 4429: 429}[code]
	if status == 0 {
		return fmt.Errorf("WebSocket closed (%d): %s", code, strings.TrimSpace(reason))
	}
	return &APIError{StatusCode: status, Status: status, Type: "about:blank",
		Title: fmt.Sprintf("WebSocket closed (%d)", code), Detail: reason}
}
