package bitnet

// The client and its options. Hand-written runtime, shared by every generated client.

import (
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// Tokens are the credentials after a refresh; persist RefreshToken if you keep sessions
// (refresh tokens rotate: each one works once).
type Tokens struct {
	AccessToken  string
	RefreshToken string
	ExpiresIn    int
}

// Client calls the API. It is safe for concurrent use; create one and reuse it.
type Client struct {
	root       string
	httpClient *http.Client
	apiKey     string
	timeout    time.Duration
	retry      RetryPolicy
	header     http.Header
	onTokens   func(Tokens)

	mu           sync.Mutex // guards token and refreshToken
	token        string
	refreshToken string
	refreshMu    sync.Mutex // one refresh at a time
}

// Option configures a Client.
type Option func(*Client)

// WithToken sends "Authorization: Bearer <token>": an access token or an API key.
func WithToken(token string) Option { return func(c *Client) { c.token = token } }

// WithAPIKey sends the key in the API key header when no token is set.
func WithAPIKey(key string) Option { return func(c *Client) { c.apiKey = key } }

// WithRefreshToken lets the client refresh the access token once, and retry, on a 401.
func WithRefreshToken(token string) Option { return func(c *Client) { c.refreshToken = token } }

// WithOnTokens is called after each refresh with the new tokens.
func WithOnTokens(fn func(Tokens)) Option { return func(c *Client) { c.onTokens = fn } }

// WithHTTPClient replaces http.DefaultClient (proxies, TLS, transports).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.httpClient = hc } }

// WithTimeout bounds each attempt until its answer is read (streams: until the headers).
// Default 60 s; 0 means no timeout (the context still applies).
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }

// WithRetry sets the retry policy (NoRetry turns retries off).
func WithRetry(p RetryPolicy) Option { return func(c *Client) { c.retry = p } }

// WithHeader adds a header to every request.
func WithHeader(key, value string) Option { return func(c *Client) { c.header.Add(key, value) } }

// NewClient returns a client of the server at baseURL (e.g. "http://localhost:8080"; when
// empty, $BITNET_BASE_URL); the API's base path is appended unless baseURL already ends with
// it. The API key defaults to $BITNET_API_KEY.
func NewClient(baseURL string, opts ...Option) *Client {
	if baseURL == "" {
		baseURL = os.Getenv("BITNET_BASE_URL")
	}
	root := strings.TrimRight(baseURL, "/")
	if apiBasePath != "" && !strings.HasSuffix(root, apiBasePath) {
		root += apiBasePath
	}
	c := &Client{
		root:       root,
		httpClient: http.DefaultClient,
		timeout:    60 * time.Second,
		retry:      DefaultRetryPolicy(),
		header:     http.Header{},
		apiKey:     os.Getenv("BITNET_API_KEY"),
	}
	for _, opt := range opts {
		opt(c)
	}
	return c
}

// SetTokens replaces the credentials (e.g. with what Login returned); an empty
// refreshToken keeps the current one.
func (c *Client) SetTokens(accessToken, refreshToken string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.token = accessToken
	if refreshToken != "" {
		c.refreshToken = refreshToken
	}
}

// Token is the access token (or API key) currently sent as bearer token.
func (c *Client) Token() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.token
}

// Ptr returns a pointer to v, for optional fields: bitnet.Ptr(0.7).
func Ptr[T any](v T) *T { return &v }
