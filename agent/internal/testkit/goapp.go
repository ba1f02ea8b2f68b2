package testkit

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// GoApp is GoAppFiles for a test.
func GoApp(t testing.TB) map[string]string {
	t.Helper()
	files, err := GoAppFiles()
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// GoAppFiles is the files of a small Go web app, module example.com/hello,
// with one dependency fetched from the Go module proxy
// (github.com/google/uuid, whose go.sum lines are taken from this
// repository's go.sum). It answers "go <VERSION> 36" on 127.0.0.1:$PORT.
func GoAppFiles() (map[string]string, error) {
	_, file, _, _ := runtime.Caller(0)
	f, err := os.Open(filepath.Join(filepath.Dir(file), "..", "..", "..", "go.sum"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var sum strings.Builder
	for sc := bufio.NewScanner(f); sc.Scan(); {
		if strings.HasPrefix(sc.Text(), "github.com/google/uuid v1.6.0") {
			sum.WriteString(sc.Text() + "\n")
		}
	}
	if sum.Len() == 0 {
		return nil, errors.New("go.sum has no github.com/google/uuid v1.6.0")
	}
	return map[string]string{
		"go.mod": "module example.com/hello\n\ngo 1.22\n\nrequire github.com/google/uuid v1.6.0\n",
		"go.sum": sum.String(),
		"main.go": `package main

import (
	"fmt"
	"net/http"
	"os"

	"github.com/google/uuid"
)

func main() {
	id := uuid.NewString()
	http.ListenAndServe("127.0.0.1:"+os.Getenv("PORT"), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "go %s %d", os.Getenv("VERSION"), len(id))
	}))
}
`,
	}, nil
}
