package deploy

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/coder-slots/coder-slots/agent/buildpack"
	"github.com/coder-slots/coder-slots/agent/logs"
	"github.com/coder-slots/coder-slots/agent/source"
	"github.com/coder-slots/coder-slots/agent/state"
)

// Deploy validates req and starts deploying it into the slot; the record it
// returns is running. A refused request (ErrInvalid, ErrBusy) changes nothing.
func (d *Deployer) Deploy(name string, req Request) (Record, error) {
	return d.deploy(name, req, TriggerDeploy, nil)
}

// Follow is Deploy for a followed branch (trigger follow): allow, given
// the slot's state once the slot is reserved, may still refuse it (the
// user took control meanwhile); its error is returned as ErrInvalid.
func (d *Deployer) Follow(name string, req Request, allow func(state.Slot) error) (Record, error) {
	return d.deploy(name, req, TriggerFollow, allow)
}

func (d *Deployer) deploy(name string, req Request, trig Trigger, allow func(state.Slot) error) (Record, error) {
	if err := req.check(); err != nil {
		return Record{}, err
	}
	if req.Repo != "" {
		if err := source.ValidateRepo(req.Repo); err != nil {
			return Record{}, invalid("%v", err)
		}
		if err := source.ValidateRef(req.Ref); err != nil {
			return Record{}, invalid("%v", err)
		}
	}
	var slotEnv map[string]string
	j, err := d.begin(name, trig, func(ss state.Slot, r *Record) (bool, error) {
		if allow != nil {
			if err := allow(ss); err != nil {
				return false, invalid("%v", err)
			}
		}
		r.Repo, r.Ref, r.Dir, r.Origin = source.Redact(req.Repo), req.Ref, req.Dir, req.Origin
		slotEnv = ss.Env
		return true, nil
	})
	if err != nil {
		return Record{}, err
	}
	secrets := append(source.Secrets(req.Repo), j.slot.Secrets(req.Env)...)
	j.sink.SetSecrets(append(secrets, logs.SecretValues(slotEnv)...))
	rec := *j.rec
	j.run(func(ctx context.Context) error { return j.build(ctx, req) })
	return rec, nil
}

// build makes a new release from req's source and cuts over to it.
func (j *job) build(ctx context.Context, req Request) error {
	d, name := j.d, j.rec.Slot
	prev := d.store.Slot(name)
	now := time.Now().UTC()
	var commit, dir string
	// The release folder gets its final name once the commit is known.
	work, err := os.MkdirTemp(d.releasesDir(name), ".new-")
	if err != nil {
		if err = os.MkdirAll(d.releasesDir(name), 0o700); err == nil {
			work, err = os.MkdirTemp(d.releasesDir(name), ".new-")
		}
		if err != nil {
			return fmt.Errorf("create release folder: %w", err)
		}
	}
	keep := false
	defer func() {
		if !keep {
			_ = os.RemoveAll(work)
			if dir != "" {
				_ = os.RemoveAll(dir)
			}
		}
	}()
	var subject string
	err = j.stage("fetch", func() error {
		if req.push != nil {
			commit = req.push.commit
			var err error
			subject, err = j.checkoutPushed(ctx, req.push, work)
			return err
		}
		if req.Dir != "" {
			j.logf("copying %s", req.Dir)
			desc, err := source.CopyDir(ctx, req.Dir, work, j.out)
			commit = desc
			return err
		}
		j.logf("fetching %s %s", source.Redact(req.Repo), refOrDefault(req.Ref))
		g := &source.Git{CacheDir: filepath.Join(d.cfg.DataDir, "slots", name, "cache.git"), Env: d.cfg.Env, Log: j.out}
		c, err := g.Fetch(ctx, req.Repo, req.Ref)
		if err != nil {
			return err
		}
		commit = c
		subject = j.subject(ctx, g, c)
		j.logf("commit %s %s", c, subject)
		return g.Checkout(ctx, c, work)
	})
	if err != nil {
		return err
	}
	j.updateRecord(func(r *Record) { r.Commit, r.Subject = commit, subject })
	id := stamp(now) + "-" + shortCommit(commit)
	dir = filepath.Join(d.releasesDir(name), id)
	if err := os.Rename(work, dir); err != nil {
		return fmt.Errorf("name release folder: %w", err)
	}
	var plan buildpack.Plan
	if err := j.stage("detect", func() error {
		var err error
		plan, err = buildpack.Detect(dir, buildpack.Options{Build: req.Build, Start: req.Start, StaticDir: req.StaticDir})
		if err == nil {
			j.logf("%s", plan.Describe())
			j.updateRecord(func(r *Record) { r.Language, r.Plan = language(plan), plan.Describe() })
		}
		return err
	}); err != nil {
		return err
	}
	env := maps.Clone(prev.Env)
	if env == nil {
		env = map[string]string{}
	}
	maps.Copy(env, req.Env)
	// Install and build see the env the app will see (NEXT_PUBLIC_*, a
	// migration through DATABASE_URL), its values masked in the log.
	runner := &buildpack.Runner{Env: j.slot.BuildEnv(env), CacheDir: d.cacheDir(), Log: j.out, Mask: j.sink.Mask}
	prevDir := ""
	if cur, ok := prev.Find(prev.Current); ok {
		prevDir = cur.Dir
	}
	if err := j.stage("install", func() error {
		reused, err := runner.Install(ctx, dir, plan, prevDir)
		switch {
		case reused && plan.Language == buildpack.Node:
			j.logf("dependencies unchanged: reused node_modules of the previous release")
		case reused:
			j.logf("dependencies unchanged: reused those of an earlier release")
		}
		return err
	}); err != nil {
		return err
	}
	var static string
	if err := j.stage("build", func() error {
		if err := runner.Build(ctx, dir, plan); err != nil || !plan.Static {
			return err
		}
		var err error
		if static, err = buildpack.StaticRoot(dir, plan); err == nil {
			j.logf("static site: serving %s", static)
		}
		return err
	}); err != nil {
		return err
	}
	rel := state.Release{
		ID: id, Dir: dir, Command: plan.Start, Env: env, CreatedAt: now,
		Repo: source.Redact(req.Repo), Ref: req.Ref, Commit: commit, Subject: subject,
		Language: language(plan), Plan: plan.Describe(), Static: static, SPA: req.SPA && static != "", Path: runner.AppPath(dir, plan),
	}
	if req.push != nil {
		cand, err := j.launch(ctx, rel)
		if err != nil {
			return err
		}
		return j.stage("cutover", func() error {
			keep, err = j.awaitGit(ctx, rel, cand, req.push)
			return err
		})
	}
	keep, err = j.cutover(ctx, rel, true)
	return err
}

// MaxSubject caps the characters of a commit's subject in records.
const MaxSubject = 200

// subject is the first line of commit's message for the record: masked
// (the one choke point of what the deploy tells: a secret in a commit
// message shows no more than in the log) and cut to MaxSubject characters
// with an ellipsis. A message that cannot be read is no reason to fail
// the deploy: it is "" and the log says why.
func (j *job) subject(ctx context.Context, g *source.Git, commit string) string {
	s, err := g.Subject(ctx, commit)
	if err != nil {
		j.logf("(commit message not read: %v)", err)
		return ""
	}
	s = j.sink.Mask(s)
	if r := []rune(s); len(r) > MaxSubject {
		s = string(r[:MaxSubject-1]) + "…"
	}
	return s
}

// Rollback switches the slot back to a kept release (the one before the
// current when id is empty), through the same health gate; origin goes to
// the record (see Record.Origin).
func (d *Deployer) Rollback(name, id, origin string) (Record, error) {
	var rel state.Release
	j, err := d.begin(name, TriggerRollback, func(ss state.Slot, r *Record) (bool, error) {
		if id == "" {
			if id = rollbackTarget(ss); id == "" {
				return false, invalid("slot %s has no earlier release to roll back to", name)
			}
		}
		var ok bool
		if rel, ok = ss.Find(id); !ok {
			return false, invalid("slot %s has no release %q (kept: %s)", name, id, releaseIDs(ss))
		}
		if id == ss.Current && ss.Desired == state.DesiredRunning {
			return false, invalid("release %s is already serving in slot %s", id, name)
		}
		r.Repo, r.Ref, r.Commit, r.Subject, r.Release, r.Origin = rel.Repo, rel.Ref, rel.Commit, rel.Subject, rel.ID, origin
		return true, nil
	})
	if err != nil {
		return Record{}, err
	}
	j.sink.SetSecrets(j.slot.Secrets(rel.Env))
	rec := *j.rec
	j.run(func(ctx context.Context) error {
		j.logf("rolling back slot %s to release %s", name, rel.ID)
		_, err := j.cutover(ctx, rel, false)
		return err
	})
	return rec, nil
}

// SetEnv changes the slot's environment and returns the new one. With a
// release serving, that is a new release of the same code with the new env,
// cut over like a deploy (so a rollback restores the old env), and its
// record is returned. An empty slot keeps the env for its next deploy (nil
// record). origin goes to the record (see Record.Origin).
func (d *Deployer) SetEnv(name string, set map[string]string, unset []string, origin string) (map[string]string, *Record, error) {
	if d.slots(name) == nil {
		return nil, nil, invalid("unknown slot %q", name)
	}
	if len(set) == 0 && len(unset) == 0 {
		return nil, nil, invalid("nothing to change: give K=V to set or K to unset")
	}
	if err := ValidateEnv(set); err != nil {
		return nil, nil, err
	}
	for _, k := range unset {
		if err := ValidateEnvName(k); err != nil {
			return nil, nil, err
		}
	}
	var env, oldEnv map[string]string
	var cur, rel state.Release
	j, err := d.begin(name, TriggerEnv, func(ss state.Slot, r *Record) (bool, error) {
		env, oldEnv = maps.Clone(ss.Env), ss.Env
		if env == nil {
			env = map[string]string{}
		}
		maps.Copy(env, set)
		for _, k := range unset {
			delete(env, k)
		}
		var ok bool
		cur, ok = ss.Find(ss.Current)
		if !ok || ss.Desired != state.DesiredRunning {
			return false, d.saveEnv(name, env, cur, ok)
		}
		rel = withEnv(cur, env)
		r.Repo, r.Ref, r.Commit, r.Subject, r.Release, r.Origin = rel.Repo, rel.Ref, rel.Commit, rel.Subject, rel.ID, origin
		return true, nil
	})
	if err != nil {
		return nil, nil, err
	}
	if j == nil {
		return env, nil, nil
	}
	j.sink.SetSecrets(append(j.slot.Secrets(env), logs.SecretValues(oldEnv)...))
	rec := *j.rec
	j.run(func(ctx context.Context) error {
		j.logf("new release %s: code of %s with env %s", rel.ID, cur.ID, strings.Join(sortedKeys(env), ", "))
		_, err := j.cutover(ctx, rel, true)
		return err
	})
	return env, &rec, nil
}

// saveEnv stores env for a slot that serves no app; the slot is reserved.
// A stopped slot with a release gets a new release of the same
// code with env (not started: its next restart runs it), so what runs
// always matches a release and a rollback restores the env too.
func (d *Deployer) saveEnv(name string, env map[string]string, cur state.Release, hasRelease bool) error {
	var drop []string
	err := d.store.UpdateSlot(name, func(s *state.Slot) {
		s.Env = env
		if hasRelease {
			rel := withEnv(cur, env)
			s.Releases = append(s.Releases, rel)
			s.Previous, s.Current = previousOf(*s, rel.ID), rel.ID
			s.Releases, drop = d.prune(s.Releases, rel.ID)
		}
	})
	if err == nil {
		removeAll(drop)
		d.pruneCache()
	}
	return err
}

// withEnv is a new release of cur's code with env.
func withEnv(cur state.Release, env map[string]string) state.Release {
	now := time.Now().UTC()
	rel := cur
	rel.ID, rel.Env, rel.CreatedAt = stamp(now)+"-"+shortCommit(cur.Commit), env, now
	return rel
}

// cacheDir holds what deploys share: package managers' caches and Python
// virtualenvs.
func (d *Deployer) cacheDir() string { return filepath.Join(d.cfg.DataDir, "cache") }

// pruneCache removes the virtualenvs that no kept release of any slot
// uses any more (a deploy under way is protected for as long as a deploy
// may take).
func (d *Deployer) pruneCache() {
	var inUse []string
	for _, r := range d.store.KeptReleases() {
		inUse = append(inUse, r.Path...)
	}
	removed, err := (&buildpack.Runner{CacheDir: d.cacheDir()}).PruneVenvs(inUse, d.cfg.Timeout)
	for _, venv := range removed {
		d.log.Info("removed a virtualenv no release uses", "dir", venv)
	}
	if err != nil {
		d.log.Warn("could not prune the cache", "err", err)
	}
}

// removeAll deletes the folders of pruned releases.
func removeAll(dirs []string) {
	for _, dir := range dirs {
		_ = os.RemoveAll(dir)
	}
}

// prune keeps the newest KeepReleases releases (always the current one)
// and returns the folders that no kept release uses, to delete once the
// state is saved.
func (d *Deployer) prune(rels []state.Release, current string) (kept []state.Release, drop []string) {
	if len(rels) <= d.cfg.KeepReleases {
		return rels, nil
	}
	cut := len(rels) - d.cfg.KeepReleases
	var dropped []state.Release
	for i, r := range rels {
		if i >= cut || r.ID == current {
			kept = append(kept, r)
		} else {
			dropped = append(dropped, r)
		}
	}
	used := map[string]bool{}
	for _, r := range kept {
		used[r.Dir] = true
	}
	for _, r := range dropped {
		if !used[r.Dir] {
			drop = append(drop, r.Dir)
			used[r.Dir] = true
		}
	}
	return kept, drop
}

// previousOf is what a slot's Previous becomes when next becomes current.
func previousOf(ss state.Slot, next string) string {
	if ss.Current == "" || ss.Current == next {
		return ss.Previous
	}
	return ss.Current
}

// rollbackTarget is the release a rollback that names none goes back to:
// the one current before the current one (after a rollback and an env
// change, the release from before the env change, not the code rolled
// away from), else, when that one is gone, the one kept just before the
// current one.
func rollbackTarget(ss state.Slot) string {
	if _, ok := ss.Find(ss.Previous); ok && ss.Previous != ss.Current {
		return ss.Previous
	}
	return previousRelease(ss)
}

// previousRelease is the release kept just before the current one.
func previousRelease(ss state.Slot) string {
	for i := len(ss.Releases) - 1; i > 0; i-- {
		if ss.Releases[i].ID == ss.Current {
			return ss.Releases[i-1].ID
		}
	}
	return ""
}

func releaseIDs(ss state.Slot) string {
	ids := make([]string, 0, len(ss.Releases))
	for _, r := range ss.Releases {
		ids = append(ids, r.ID)
	}
	if len(ids) == 0 {
		return "none"
	}
	return strings.Join(ids, ", ")
}

func sortedKeys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}

func shortCommit(c string) string {
	switch {
	case c == "":
		return "local"
	case strings.HasSuffix(c, "-dirty") && len(c) > 13:
		return c[:7] + "-dirty"
	case len(c) == 40 || len(c) == 64:
		return c[:7]
	default:
		return c
	}
}

func refOrDefault(ref string) string {
	if ref == "" {
		return "(default branch)"
	}
	return ref
}

// language names a plan's language for records and status ("other" for
// an app started by its command alone).
func language(p buildpack.Plan) string {
	if p.Language == "" {
		return "other"
	}
	return string(p.Language)
}
