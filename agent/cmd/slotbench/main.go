// Command slotbench measures slotagent against the PM2 setup it replaces,
// side by side in one run (idle RSS, status latency, crash → answering
// again, cold start, rehydrate, re-deploy of a small npm app and zero
// downtime during re-deploys and a rollback, proxy overhead under load) and
// prints a markdown table, also written to -out. BENCH_QUICK=1 or -quick
// runs fewer iterations (under 3 minutes); the full run takes several
// minutes. It needs node, npm, git and, for the first run, the npm registry
// (PM2 7 is installed into .cache/pm2, the sample app's dependencies into
// the npm cache); -no-pm2 measures slotagent alone; -only runs some
// measurements (e.g. -only follow).
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

	"github.com/coder-slots/coder-slots/agent/bench"
)

func main() {
	os.Exit(run())
}

func run() int {
	envQuick, _ := strconv.ParseBool(os.Getenv("BENCH_QUICK"))
	quick := flag.Bool("quick", envQuick, "fewer iterations, under 3 minutes (also env BENCH_QUICK=1)")
	out := flag.String("out", "docs/benchmarks.md", "also write the table to this file")
	noPM2 := flag.Bool("no-pm2", false, "measure slotagent alone (no PM2 install, no PM2 column)")
	binary := flag.String("slotagent", "", "slotagent binary to measure (default: build ./agent/cmd/slotagent)")
	only := flag.String("only", "", "run only these measurements, comma-separated: "+strings.Join(bench.Measurements(), ", "))
	spliceTo := flag.Bool("splice-proxy", false, "internal: serve the reference splice proxy to the address given as argument, print its address, run until killed")
	flag.Parse()
	if *spliceTo {
		if flag.NArg() != 1 {
			fmt.Fprintln(os.Stderr, "slotbench: -splice-proxy needs the target address as its one argument")
			return 2
		}
		if err := bench.ServeSplice(flag.Arg(0), os.Stdout); err != nil {
			fmt.Fprintf(os.Stderr, "slotbench: %v\n", err)
			return 1
		}
		return 0
	}
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
	opts := bench.Options{Quick: *quick, Binary: *binary, Command: command, Log: os.Stderr, NoPM2: *noPM2}
	if *only != "" {
		opts.Only = strings.Split(*only, ",")
	}
	if self, err := os.Executable(); err == nil {
		opts.SpliceProxy = []string{self, "-splice-proxy"}
	}
	report, err := bench.Run(ctx, opts)
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
		if err := os.WriteFile(*out, []byte(table+keptSection(*out)), 0o644); err != nil {
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

// e2eMarker starts the part of the benchmarks file that `make e2e
// E2E_RECORD=1` writes (provision/e2e uses the same line): a rewrite of the
// file keeps it.
const e2eMarker = "<!-- make e2e: the figures below are kept by make bench -->"

// keptSection is the e2e part of the file at path, or "".
func keptSection(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if i := strings.Index(string(b), e2eMarker); i >= 0 {
		return "\n" + string(b[i:])
	}
	return ""
}
