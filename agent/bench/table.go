package bench

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Statistic names the statistic a target is judged on.
type Statistic string

// The statistics a target can be judged on.
const (
	Median Statistic = "median"
	P99    Statistic = "p99"
	Max    Statistic = "max"
)

// Requests is the unit of request counts, shown without decimals when whole.
const Requests = "requests"

// Target is the bound a figure must stay under, from the issue that set it.
type Target struct {
	// On is the statistic compared with Max.
	On Statistic
	// Max is the largest value that meets the target, in the row's unit
	// (the smallest one when AtLeast is set).
	Max float64
	// AtLeast makes Max a lower bound.
	AtLeast bool
}

// String is the target as shown in the table ("p99 ≤ 5.00 ms").
func (t Target) String(unit string) string {
	op := "≤"
	if t.AtLeast {
		op = "≥"
	}
	return fmt.Sprintf("%s %s %s", t.On, op, value(t.Max, unit))
}

// Met reports whether s meets the target.
func (t Target) Met(s Stat) bool {
	v := s.Median
	switch t.On {
	case P99:
		v = s.P99
	case Max:
		v = s.Max
	}
	if t.AtLeast {
		return !math.IsNaN(v) && v >= t.Max
	}
	return !math.IsNaN(v) && v <= t.Max
}

// Row is one figure of the table: its statistics for each stack measured.
type Row struct {
	// Figure says what was measured.
	Figure string
	// Unit is the unit of every value in the row ("ms", "MiB").
	Unit string
	// Cells holds the statistics by stack name (see Report.Stacks); a
	// stack without a cell shows "—".
	Cells map[string]Stat
	// Target, when set, is judged against the first stack's cell.
	Target *Target
	// Note explains the row briefly.
	Note string
	// Err is why the figure could not be measured.
	Err error
}

// Markdown renders the report: a header paragraph (machine, versions, date,
// command) and one table with, for each stack, median, p99, min – max and
// the number of runs, then the target and ✓/✗.
func (r *Report) Markdown() string {
	var b strings.Builder
	m := r.Machine
	mode := "Full run"
	if r.Quick {
		mode = "Quick run (BENCH_QUICK=1: fewer iterations)"
	}
	pm2 := ""
	if m.PM2Version != "" {
		pm2 = ", PM2 " + m.PM2Version
	}
	fmt.Fprintf(&b, "# slotagent benchmarks\n\n")
	fmt.Fprintf(&b, "Measured %s on %d CPU cores (%s), %s of memory, Linux %s. "+
		"Versions: slotagent %s, Go %s, Node.js %s%s. %s. Reproduce with `%s`. "+
		"Load average (1, 5, 15 min): %s before, %s after. "+
		"All traffic goes to 127.0.0.1; times are wall-clock, polled every %s or less.%s\n\n",
		m.Date.UTC().Format("2006-01-02 15:04 UTC"), m.CPUs, m.CPUModel, m.Memory, m.Kernel,
		m.AgentVersion, m.GoVersion, m.NodeVersion, pm2, mode, r.Command, m.LoadBefore, m.LoadAfter, pollInterval, stacksNote(r.Stacks))

	head := []string{"#", "figure"}
	for _, s := range r.Stacks {
		head = append(head, s+" median", s+" p99", s+" min – max", "runs")
	}
	ratio := len(r.Stacks) > 1
	if ratio {
		head = append(head, r.Stacks[0]+" / "+r.Stacks[1]+" (medians)")
	}
	head = append(head, "target", "", "notes")
	b.WriteString("| " + strings.Join(head, " | ") + " |\n")
	b.WriteString("|" + strings.Repeat(" --- |", len(head)) + "\n")
	for i, row := range r.Rows {
		cells := []string{strconv.Itoa(i + 1), row.Figure}
		for _, s := range r.Stacks {
			st, ok := row.Cells[s]
			if !ok || row.Err != nil {
				cells = append(cells, "—", "—", "—", "—")
				continue
			}
			cells = append(cells, value(st.Median, row.Unit), value(st.P99, row.Unit),
				valueRange(st.Min, st.Max, row.Unit), strconv.Itoa(st.N))
		}
		if ratio {
			cells = append(cells, ratioOf(row, r.Stacks[0], r.Stacks[1]))
		}
		target, verdict := "—", ""
		if row.Target != nil {
			target = row.Target.String(row.Unit)
			verdict = "✗"
			if row.Err == nil && len(r.Stacks) > 0 && row.Target.Met(row.Cells[r.Stacks[0]]) {
				verdict = "✓"
			}
		}
		note := row.Note
		if row.Err != nil {
			verdict = "✗"
			note = strings.TrimSpace(note + " failed: " + row.Err.Error())
		}
		cells = append(cells, target, verdict, note)
		for j := range cells {
			cells[j] = strings.ReplaceAll(strings.ReplaceAll(cells[j], "|", `\|`), "\n", " ")
		}
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	return b.String()
}

// value formats v with a precision suited to its size.
func value(v float64, unit string) string {
	if math.IsNaN(v) {
		return "—"
	}
	return numberIn(v, unit) + " " + unit
}

func valueRange(lo, hi float64, unit string) string {
	if math.IsNaN(lo) || math.IsNaN(hi) {
		return "—"
	}
	return numberIn(lo, unit) + " – " + numberIn(hi, unit) + " " + unit
}

// numberIn is number, but a whole count of Requests has no decimals.
func numberIn(v float64, unit string) string {
	if unit == Requests && v == math.Trunc(v) {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return number(v)
}

func number(v float64) string {
	switch a := math.Abs(v); {
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

// ratioOf is the median of stack a over the median of stack b in row, or
// "—" when either is missing.
func ratioOf(row Row, a, b string) string {
	x, okA := row.Cells[a]
	y, okB := row.Cells[b]
	if row.Err != nil || !okA || !okB || math.IsNaN(x.Median) || math.IsNaN(y.Median) || y.Median == 0 {
		return "—"
	}
	return number(x.Median/y.Median) + "×"
}

// stacksNote describes the PM2 stack when it is measured.
func stacksNote(stacks []string) string {
	if !slices.Contains(stacks, PM2) {
		return ""
	}
	return "\n\nThe PM2 column is the setup slotagent replaces, on the same machine in the same run: a PM2 daemon " +
		"(its own PM2_HOME in a temporary directory) running, from a generated ecosystem.config.js, an admin Node server " +
		"and five Node placeholder servers, one per slot (`GET /health` → `{\"status\":\"healthy\",\"slot\":\"a\",\"type\":\"placeholder\"}`, " +
		"any other path a page), as the old ecosystem file ran them; apps are the same hello app in both stacks. " +
		"The ratio column is slotagent's median over PM2's (below 1: slotagent is smaller or faster). " +
		"Targets are judged on slotagent's column."
}
