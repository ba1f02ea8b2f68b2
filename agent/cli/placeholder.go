package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/coder-slots/coder-slots/agent/config"
	"github.com/coder-slots/coder-slots/agent/slot"
)

// placeholderCmd serves one slot's placeholder alone: what the ecosystem
// export runs for an empty slot under PM2.
func placeholderCmd() *cobra.Command {
	var port int
	var bind, url, adminURL string
	cmd := &cobra.Command{
		Use:   "placeholder SLOT --port N",
		Short: "Serve a slot's placeholder page and /health alone, without the agent (the ecosystem export runs it for an empty slot)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if !config.ValidSlot(name) {
				return fmt.Errorf("unknown slot %q: slots are a, b, c, d, e", name)
			}
			if port < 1 || port > 65535 {
				return fmt.Errorf("--port must be a port number (1-65535), not %d", port)
			}
			url = orEnv(url, "SLOT_"+strings.ToUpper(name)+"_URL")
			adminURL = orEnv(adminURL, "ADMIN_URL")
			bind = orEnv(bind, "SLOTAGENT_BIND")
			if bind == "" {
				bind = "127.0.0.1"
			}
			ln, err := net.Listen("tcp", net.JoinHostPort(bind, strconv.Itoa(port)))
			if err != nil {
				return fmt.Errorf("placeholder of slot %s: %w", name, err)
			}
			srv := &http.Server{Handler: slot.Placeholder(name, url, adminURL), ReadHeaderTimeout: 30 * time.Second}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			go func() {
				<-ctx.Done()
				shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = srv.Shutdown(shut)
			}()
			fmt.Fprintf(cmd.ErrOrStderr(), "placeholder of slot %s on %s\n", name, ln.Addr())
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&port, "port", 0, "the port to listen on (required)")
	cmd.Flags().StringVar(&bind, "bind", "", "address to listen on (env SLOTAGENT_BIND; default 127.0.0.1)")
	cmd.Flags().StringVar(&url, "url", "", "the slot's URL shown on the page (env SLOT_<X>_URL)")
	cmd.Flags().StringVar(&adminURL, "admin-url", "", "the admin panel's URL the page links to (env ADMIN_URL)")
	return cmd
}

// orEnv is v, or the environment variable name when v is empty.
func orEnv(v, name string) string {
	if v != "" {
		return v
	}
	return os.Getenv(name)
}
