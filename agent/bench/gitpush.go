package bench

import (
	"context"
	"fmt"
	"os/exec"
	"strings"

	"github.com/coder-slots/coder-slots/agent/deploy"
)

// Figures of the git push measurement: a re-deploy by `git push` beside
// `slotagent deploy` of the same commit (issue 16).
const (
	figPush       = "re-deploy by `git push`, unchanged dependencies: `git push <slot a's repository> main` → slot serving the new commit"
	figPushDeploy = "… the same commit by `slotagent deploy b --repo … --ref main --wait` → slot b serving it"
)

// pushSlot is the slot that the same commits are deployed into with
// `slotagent deploy`, beside appSlot's pushes.
const pushSlot = "b"

// gitPush deploys the sample app into slot a by `git push` to its
// repository and into slot b by `slotagent deploy` from a bare repository
// (neither timed: they fill the npm cache), then b.n.redeploys times
// commits a new VERSION and deploys it both ways, timed from the exec to
// the slot serving it, the order alternating from run to run.
func (b *bench) gitPush(ctx context.Context) []Row {
	fail := func(err error) []Row {
		return []Row{failed(figPush, nil, err), failed(figPushDeploy, nil, err)}
	}
	a, r, err := b.sampleAgent(ctx)
	if err != nil {
		return fail(err)
	}
	defer b.stop(a)
	if err := r.commit(ctx, "v1"); err != nil {
		return fail(err)
	}
	if out, err := b.deployCmd(ctx, a, deployTimeout, "git-remote", appSlot); err != nil {
		return fail(fmt.Errorf("%w\n%s", err, tail(out)))
	}
	repo := deploy.GitRepo(a.dataDir, appSlot)
	push := func(ctx context.Context) *exec.Cmd { return gitCmd(ctx, r.work, "push", repo, "HEAD:refs/heads/main") }
	deployB := func(ctx context.Context) *exec.Cmd {
		cmd := exec.CommandContext(ctx, a.bin, "deploy", pushSlot, "--repo", r.bare, "--ref", "main", "--wait")
		cmd.Env = a.env
		return cmd
	}

	b.logf("git push: first push to slot %s and first deploy to slot %s (npm ci, not timed)", appSlot, pushSlot)
	firstCtx, cancel := context.WithTimeout(ctx, firstDeployTimeout)
	out, err := push(firstCtx).CombinedOutput()
	cancel()
	if err != nil {
		return fail(fmt.Errorf("first push: %w\n%s%s", err, tail(string(out)), a.logTail()))
	}
	if out, err := b.deployCmd(ctx, a, firstDeployTimeout, "deploy", pushSlot, "--repo", r.bare, "--wait"); err != nil {
		return fail(fmt.Errorf("first deploy: %w\n%s%s", err, tail(out), a.logTail()))
	}
	var pushed, deployed []float64
	var notReused []string
	for i := range b.n.redeploys {
		version := fmt.Sprintf("v%d", i+2)
		if err := r.commit(ctx, version); err != nil {
			return fail(err)
		}
		order := []string{appSlot, pushSlot}
		if i%2 == 1 {
			order = []string{pushSlot, appSlot}
		}
		b.logf("git push: run %d of %d (%s, %s first)", i+1, b.n.redeploys, version, order[0])
		for _, slot := range order {
			mk, times := push, &pushed
			if slot == pushSlot {
				mk, times = deployB, &deployed
			}
			res, err := b.timedCommand(ctx, a, slot, false, sampleBody(version), mk)
			if err != nil {
				return fail(fmt.Errorf("run %d (%s), slot %s: %w%s", i+1, version, slot, err, a.logTail()))
			}
			if !strings.Contains(res.out, "reused node_modules") {
				notReused = append(notReused, version+" in slot "+slot)
			}
			*times = append(*times, ms(res.serving))
		}
	}
	note := fmt.Sprintf("each run commits a new VERSION (server.js only); GET / polled every %s; the push is checked out from its quarantine (no fetch), "+
		"the deploy fetches from a local bare repository into the slot's cache; the order alternates from run to run", pollInterval)
	rows := []Row{
		ours(figPush, "ms", Summarize(pushed), nil, note),
		ours(figPushDeploy, "ms", Summarize(deployed), nil, "same commits, same agent, slot b"),
	}
	if len(notReused) > 0 {
		rows[0].Err = fmt.Errorf("the deploy log of %s does not say \"reused node_modules\": dependencies were installed again", strings.Join(notReused, ", "))
	}
	return rows
}
