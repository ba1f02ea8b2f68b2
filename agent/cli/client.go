package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/coder-slots/coder-slots/agent/admin"
	"github.com/coder-slots/coder-slots/agent/config"
)

// client talks to a running agent over its control socket.
type client struct {
	socket string
	http   *http.Client
}

func newClient(dataDir string) *client {
	sock := config.SocketPath(dataDir)
	return &client{socket: sock, http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}}
}

// errNotRunning is what client commands say when no agent answers.
type errNotRunning struct{ socket string }

func (e errNotRunning) Error() string {
	return fmt.Sprintf("no agent is running: nothing answers on %s (start one with `slotagent run`, or point --data-dir / SLOTAGENT_DATA_DIR at its data dir)", e.socket)
}

// do sends a request (with body as JSON unless nil) and returns the
// response for 2xx answers; other answers become an error carrying the
// API's message.
func (c *client) do(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://slotagent"+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("permission denied: this user may not open the agent's control socket %s (it is the agent's user's alone: run this as that user)", c.socket)
		}
		var opErr *net.OpError
		if errors.As(err, &opErr) || errors.Is(err, os.ErrNotExist) {
			return nil, errNotRunning{c.socket}
		}
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		var e admin.Error
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			if e.Details != "" {
				return nil, fmt.Errorf("%s (%s)", e.Error, e.Details)
			}
			return nil, errors.New(e.Error)
		}
		return nil, fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	return resp, nil
}

// call sends body (nil for none) and decodes the answer into v.
func (c *client) call(method, path string, body, v any) error {
	return c.callContext(context.Background(), method, path, body, v)
}

// callContext is call within ctx.
func (c *client) callContext(ctx context.Context, method, path string, body, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	resp, err := c.do(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("%s %s: bad answer: %w", method, path, err)
	}
	return nil
}
