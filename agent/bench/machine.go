package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Machine describes where a run happened.
type Machine struct {
	// CPUs is the number of cores the run may use (as nproc counts them).
	CPUs int
	// CPUModel is the first "model name" of /proc/cpuinfo.
	CPUModel string
	// Memory is MemTotal from /proc/meminfo, in GiB.
	Memory string
	// Kernel is the Linux release.
	Kernel string
	// GoVersion is the Go toolchain that built the benchmark and slotagent.
	GoVersion string
	// NodeVersion is `node --version`, or "not installed".
	NodeVersion string
	// PM2Version is the PM2 measured, empty when PM2 was not measured.
	PM2Version string
	// AgentVersion is `slotagent version`.
	AgentVersion string
	// Date is when the run started.
	Date time.Time
	// LoadBefore and LoadAfter are the load averages (1, 5, 15 min) when
	// the measurements started and ended: other work on the machine skews
	// the figures.
	LoadBefore, LoadAfter string
}

// probeMachine fills a Machine; what cannot be read shows as "unknown".
func probeMachine(ctx context.Context, bin string) Machine {
	m := Machine{
		CPUs:         runtime.NumCPU(),
		CPUModel:     "unknown CPU",
		Memory:       "unknown",
		Kernel:       "unknown",
		GoVersion:    strings.TrimPrefix(runtime.Version(), "go"),
		NodeVersion:  "not installed",
		AgentVersion: "unknown",
		Date:         time.Now(),
		LoadBefore:   loadAverage(),
	}
	if v, ok := procField("/proc/cpuinfo", "model name"); ok {
		m.CPUModel = v
	}
	if v, ok := procField("/proc/meminfo", "MemTotal"); ok {
		if kb, err := strconv.ParseFloat(strings.TrimSuffix(v, " kB"), 64); err == nil {
			m.Memory = fmt.Sprintf("%.1f GiB", kb/(1<<20))
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if v, err := output(ctx, "node", "--version"); err == nil {
		m.NodeVersion = v
	}
	if v, err := output(ctx, bin, "version"); err == nil {
		m.AgentVersion = strings.TrimPrefix(v, "slotagent ")
	}
	return m
}

// procField returns the value of the first "key: value" line of a /proc file.
func procField(path, key string) (string, bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

// output runs a command (argument list, no shell) with a time bound and
// returns its trimmed standard output.
func output(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(errOut.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// loadAverage is the first three fields of /proc/loadavg, or "unknown".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
