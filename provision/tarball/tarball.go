// Package tarball packs a template directory the way `coder templates push`
// does: hidden files and folders are left out except .terraform.lock.hcl,
// and so are Terraform state and tfvars files, and the archive must stay
// under the coder CLI's limit. A lock file made against a local provider
// mirror is left out too: its hashes are not the registry's, and the
// deployment's terraform init would reject them. The archive is the same
// bytes for the same files (sorted names, fixed times and owners).
package tarball

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// Limit is the coder CLI's template archive limit (1 MiB), well under the
// 4 MiB a provisioner job accepts.
const Limit = 1 << 20

// LockFile is the one hidden file Coder keeps.
const LockFile = ".terraform.lock.hcl"

// Result is a packed template.
type Result struct {
	Tar []byte
	// Files are the archived files, in order.
	Files []string
	// Skipped tells which files were left out and why, for the user.
	Skipped []string
}

// Pack archives dir.
func Pack(dir string) (*Result, error) {
	var names []string
	res := &Result{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		base := d.Name()
		switch {
		case strings.HasPrefix(base, ".") && base != LockFile:
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		case d.IsDir():
			return nil
		case strings.Contains(base, ".tfstate"), base == "terraform.tfvars", base == "terraform.tfvars.json",
			strings.HasSuffix(base, ".auto.tfvars"), strings.HasSuffix(base, ".auto.tfvars.json"):
			res.Skipped = append(res.Skipped, rel+" (Coder never takes state or tfvars files)")
			return nil
		case !d.Type().IsRegular():
			res.Skipped = append(res.Skipped, rel+" (not a regular file)")
			return nil
		}
		names = append(names, rel)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tarball: %w", err)
	}
	if !slices.ContainsFunc(names, func(n string) bool { return !strings.Contains(n, "/") && strings.HasSuffix(n, ".tf") }) {
		return nil, fmt.Errorf("tarball: %s has no .tf file: not a template (render one with `slotprov render`)", dir)
	}
	slices.Sort(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0).UTC()
	dirs := map[string]bool{}
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
		if err != nil {
			return nil, fmt.Errorf("tarball: %w", err)
		}
		if filepath.Base(name) == LockFile {
			if local, err := mirrorLock(data); err != nil {
				return nil, fmt.Errorf("tarball: %s: %w", name, err)
			} else if local {
				res.Skipped = append(res.Skipped, name+" (made against a local provider mirror: no registry hashes)")
				continue
			}
		}
		for _, d := range parents(name) {
			if !dirs[d] {
				dirs[d] = true
				if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
					return nil, fmt.Errorf("tarball: %w", err)
				}
			}
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: epoch, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("tarball: %w", err)
		}
		if _, err := tw.Write(data); err != nil {
			return nil, fmt.Errorf("tarball: %w", err)
		}
		res.Files = append(res.Files, name)
		if buf.Len() >= Limit {
			return nil, fmt.Errorf("tarball: %s is over Coder's %d-byte template limit at %s (no binaries in a template)", dir, Limit, name)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("tarball: %w", err)
	}
	if buf.Len() >= Limit {
		return nil, fmt.Errorf("tarball: %s is over Coder's %d-byte template limit", dir, Limit)
	}
	res.Tar = buf.Bytes()
	return res, nil
}

// parents are the folders above a slash-separated path, outermost first.
func parents(name string) []string {
	var out []string
	for i, r := range name {
		if r == '/' {
			out = append(out, name[:i])
		}
	}
	return out
}

// mirrorLock reports whether a lock file was made against a local mirror:
// terraform init records zh: hashes (the registry's signed checksums) only
// for providers it got from a registry, so a lock where some provider has
// none came from a mirror.
func mirrorLock(data []byte) (bool, error) {
	f, diags := hclsyntax.ParseConfig(data, LockFile, hcl.InitialPos)
	if diags.HasErrors() {
		return false, errors.New(strings.Join(strings.Fields(diags.Error()), " "))
	}
	body, ok := f.Body.(*hclsyntax.Body)
	if !ok {
		return false, errors.New("unexpected lock file body")
	}
	for _, b := range body.Blocks {
		if b.Type != "provider" {
			continue
		}
		attr, ok := b.Body.Attributes["hashes"]
		if !ok {
			return true, nil
		}
		v, diags := attr.Expr.Value(nil)
		if diags.HasErrors() || !v.CanIterateElements() {
			return false, fmt.Errorf("provider %q: unreadable hashes", strings.Join(b.Labels, " "))
		}
		registry := false
		for it := v.ElementIterator(); it.Next(); {
			_, h := it.Element()
			if h.Type().FriendlyName() == "string" && strings.HasPrefix(h.AsString(), "zh:") {
				registry = true
			}
		}
		if !registry {
			return true, nil
		}
	}
	return false, nil
}
