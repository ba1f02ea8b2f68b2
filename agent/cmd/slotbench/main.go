// Command slotbench measures slotagent's speed and memory (idle RSS, status
// latency, crash → answering again, cold start, re-deploy of a small npm app
// and zero downtime during re-deploys and a rollback) and prints a markdown
// table, also written to -out. BENCH_QUICK=1 or -quick runs fewer iterations
// (well under a minute); the full run takes a few minutes. The re-deploy
// figures need node, npm, git and the npm registry (for the first install).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/coder-slots/coder-slots/agent/internal/bench"
)

func main() {
	os.Exit(run())
}

func run() int {
	envQuick, _ := strconv.ParseBool(os.Getenv("BENCH_QUICK"))
	quick := flag.Bool("quick", envQuick, "fewer iterations, under a minute (also env BENCH_QUICK=1)")
	out := flag.String("out", "docs/benchmarks.md", "also write the table to this file")
	binary := flag.String("slotagent", "", "slotagent binary to measure (default: build ./agent/cmd/slotagent)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "slotbench: unexpected arguments %q\n", flag.Args())
		return 2
	}

	command := "go run ./agent/cmd/slotbench"
	if len(os.Args) > 1 {
		command += " " + strings.Join(os.Args[1:], " ")
	}
	if envQuick {
		command = "BENCH_QUICK=1 " + command
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	report, err := bench.Run(ctx, bench.Options{Quick: *quick, Binary: *binary, Command: command, Log: os.Stderr})
	if err != nil {
		fmt.Fprintf(os.Stderr, "slotbench: %v\n", err)
		return 1
	}
	table := report.Markdown()
	fmt.Print(table)
	if *out != "" {
		if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
			fmt.Fprintf(os.Stderr, "slotbench: create the directory of %s: %v\n", *out, err)
			return 1
		}
		if err := os.WriteFile(*out, []byte(table), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "slotbench: write %s: %v\n", *out, err)
			return 1
		}
		fmt.Fprintf(os.Stderr, "slotbench: wrote %s\n", *out)
	}
	if report.Failed() {
		fmt.Fprintln(os.Stderr, "slotbench: some figures could not be measured (see the table)")
		return 1
	}
	return 0
}
