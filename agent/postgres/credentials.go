package postgres

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/coder-slots/coder-slots/agent/internal/atomicfile"
)

// Credentials are the generated passwords of the cluster's roles and where
// the server listens, kept in <dir>/credentials.json, mode 0600.
type Credentials struct {
	// SystemID is the system identifier of the cluster the passwords
	// belong to; empty until initdb has finished.
	SystemID string `json:"system_id,omitempty"`
	// Port is the server's port on Host.
	Port int `json:"port"`
	// Passwords by role; Superuser is the cluster's superuser.
	Passwords map[string]string `json:"passwords"`
}

// The cluster's superuser and the address every client uses.
const (
	Superuser = "postgres"
	Host      = "127.0.0.1"
)

// credentialsFile is the credentials' file name in the server's directory.
const credentialsFile = "credentials.json"

// loadCredentials reads the credentials in dir; a missing file is empty
// credentials.
func loadCredentials(dir string) (*Credentials, error) {
	c := &Credentials{Passwords: map[string]string{}}
	b, err := os.ReadFile(filepath.Join(dir, credentialsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read credentials: %w", err)
	}
	if err := json.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("read credentials %s: %w", filepath.Join(dir, credentialsFile), err)
	}
	if c.Passwords == nil {
		c.Passwords = map[string]string{}
	}
	return c, nil
}

// save writes the credentials into dir atomically, mode 0600.
func (c *Credentials) save(dir string) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("encode credentials: %w", err)
	}
	return atomicfile.Write(filepath.Join(dir, credentialsFile), append(b, '\n'), 0o600)
}

// ensure gives every role a generated password unless it has one, and
// reports whether it added any.
func (c *Credentials) ensure(roles ...string) bool {
	added := false
	for _, r := range roles {
		if c.Passwords[r] == "" {
			c.Passwords[r], added = newPassword(), true
		}
	}
	return added
}

// URL is the connection URL of role to database db, with the password
// (mask: with "********" in its place).
func (c *Credentials) URL(role, db string, mask bool) string {
	u := url.URL{Scheme: "postgresql", User: url.UserPassword(role, c.Passwords[role]),
		Host: net.JoinHostPort(Host, strconv.Itoa(c.Port)), Path: "/" + db}
	if mask {
		u.User = url.User(role) // the user info ends at the first "@"
		return strings.Replace(u.String(), "@", ":"+masked+"@", 1)
	}
	return u.String()
}

// Env is the environment that connects a client as role to database db:
// DATABASE_URL and libpq's PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD.
func (c *Credentials) Env(role, db string) map[string]string {
	return map[string]string{
		"DATABASE_URL": c.URL(role, db, false),
		"PGHOST":       Host,
		"PGPORT":       strconv.Itoa(c.Port),
		"PGDATABASE":   db,
		"PGUSER":       role,
		"PGPASSWORD":   c.Passwords[role],
	}
}

// masked replaces a secret in every answer.
const masked = "********"

// newPassword is 26 random base32 characters (130 bits): safe in URLs,
// connection strings and shells without quoting.
func newPassword() string { return rand.Text() }

// scramVerifier is the SCRAM-SHA-256 verifier of password as PostgreSQL
// stores it (RFC 5802, RFC 7677). The server takes a verifier in place of
// a password, so the password itself never reaches the server, its logs
// or a failed statement's echo.
func scramVerifier(password string) (string, error) {
	const iterations = 4096
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("generate a salt: %w", err)
	}
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		return "", fmt.Errorf("derive a key: %w", err)
	}
	clientKey := hmacSHA256(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	serverKey := hmacSHA256(salted, "Server Key")
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iterations, b64(salt), b64(storedKey[:]), b64(serverKey)), nil
}

func hmacSHA256(key []byte, msg string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msg))
	return h.Sum(nil)
}
