package bitnet

// Encoding parameters and bodies. Hand-written runtime.

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/textproto"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// File is a file in a multipart form.
type File struct {
	// Name is the file name sent to the server.
	Name string
	// ContentType defaults to application/octet-stream.
	ContentType string
	Content     io.Reader
}

// bodySource opens a request body once per attempt.
type bodySource struct {
	contentType string
	length      int64 // -1 when unknown (sent chunked)
	replayable  bool
	open        func() (io.Reader, error)
}

func jsonBody(v any) (*bodySource, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return bytesBody("application/json", data), nil
}

func bytesBody(contentType string, data []byte) *bodySource {
	return &bodySource{contentType: contentType, length: int64(len(data)), replayable: true,
		open: func() (io.Reader, error) { return bytes.NewReader(data), nil }}
}

// binaryBody streams r. A seekable r (an *os.File) is rewound for retries and sent with
// its length; any other reader is sent once, chunked.
func binaryBody(r io.Reader) *bodySource {
	src := &bodySource{contentType: "application/octet-stream", length: -1}
	if s, ok := r.(io.ReadSeeker); ok {
		if start, err := s.Seek(0, io.SeekCurrent); err == nil {
			if end, err := s.Seek(0, io.SeekEnd); err == nil {
				src.length = end - start
			}
			src.replayable = true
			src.open = func() (io.Reader, error) {
				_, err := s.Seek(start, io.SeekStart)
				return s, err
			}
			return src
		}
	}
	used := false
	src.open = func() (io.Reader, error) {
		if used {
			return nil, errNotReplayable
		}
		used = true
		return r, nil
	}
	return src
}

// formBody encodes a struct as application/x-www-form-urlencoded (by its json tags).
func formBody(v any) (*bodySource, error) {
	form := url.Values{}
	err := eachField(v, func(name string, value any) error {
		for _, s := range formatValues(value) {
			form.Add(name, s)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return bytesBody("application/x-www-form-urlencoded", []byte(form.Encode())), nil
}

// multipartBody encodes a struct as multipart/form-data; File fields become file parts.
// Multipart is for small files (servers hold such bodies in memory too), so the body is
// built in memory: it is sent with its length and can be retried. Stream big files with
// the raw upload operation instead.
func multipartBody(v any) (*bodySource, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	err := eachField(v, func(name string, value any) error {
		if f, ok := value.(File); ok {
			return writeFilePart(mw, name, f)
		}
		if f, ok := value.(*File); ok && f != nil {
			return writeFilePart(mw, name, *f)
		}
		for _, s := range formatValues(value) {
			if err := mw.WriteField(name, s); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = mw.Close()
	}
	if err != nil {
		return nil, err
	}
	return bytesBody(mw.FormDataContentType(), buf.Bytes()), nil
}

func writeFilePart(mw *multipart.Writer, field string, f File) error {
	if f.Content == nil {
		return nil
	}
	name := f.Name
	if name == "" {
		name = field
	}
	contentType := f.ContentType
	if contentType == "" {
		contentType = "application/octet-stream"
	}
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name=%q; filename=%q`, field, name))
	h.Set("Content-Type", contentType)
	part, err := mw.CreatePart(h)
	if err != nil {
		return err
	}
	_, err = io.Copy(part, f.Content)
	return err
}

// eachField calls fn with the wire name and value of each set field of a struct.
func eachField(v any, fn func(name string, value any) error) error {
	rv := reflect.Indirect(reflect.ValueOf(v))
	if rv.Kind() != reflect.Struct {
		return fmt.Errorf("expected a struct, got %T", v)
	}
	rt := rv.Type()
	for i := 0; i < rt.NumField(); i++ {
		field := rt.Field(i)
		name, opts, _ := strings.Cut(field.Tag.Get("json"), ",")
		if !field.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = field.Name
		}
		value := rv.Field(i)
		if strings.Contains(opts, "omitempty") && value.IsZero() {
			continue
		}
		if err := fn(name, value.Interface()); err != nil {
			return err
		}
	}
	return nil
}

// formatValues renders a parameter value: nil pointers and empty enums give nothing,
// slices give one string per element, times are RFC 3339.
func formatValues(v any) []string {
	rv := reflect.ValueOf(v)
	pointer := false
	for rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return nil
		}
		rv, pointer = rv.Elem(), true
	}
	if !rv.IsValid() {
		return nil
	}
	if t, ok := rv.Interface().(time.Time); ok {
		return []string{t.Format(time.RFC3339Nano)}
	}
	switch rv.Kind() {
	case reflect.Slice, reflect.Array:
		var out []string
		for i := 0; i < rv.Len(); i++ {
			out = append(out, formatValues(rv.Index(i).Interface())...)
		}
		return out
	case reflect.String:
		if rv.Len() == 0 && !pointer {
			return nil
		}
		return []string{rv.String()}
	case reflect.Bool:
		return []string{strconv.FormatBool(rv.Bool())}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return []string{strconv.FormatInt(rv.Int(), 10)}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return []string{strconv.FormatUint(rv.Uint(), 10)}
	case reflect.Float32, reflect.Float64:
		return []string{strconv.FormatFloat(rv.Float(), 'g', -1, 64)}
	}
	data, err := json.Marshal(rv.Interface())
	if err != nil {
		return nil
	}
	return []string{string(data)}
}

// setQuery and setHeader add a parameter when it is set.
func setQuery(q values, name string, v any) {
	for _, s := range formatValues(v) {
		q.Add(name, s)
	}
}

func setHeader(h header, name string, v any) {
	for _, s := range formatValues(v) {
		h.Add(name, s)
	}
}

// pathSegment escapes one path parameter.
func pathSegment(v any) string {
	values := formatValues(v)
	if len(values) == 0 {
		return ""
	}
	return url.PathEscape(values[0])
}

// newIdempotencyKey is a random UUID (version 4).
func newIdempotencyKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
