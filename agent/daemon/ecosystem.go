package daemon

import (
	"fmt"
	"maps"
	"os"
	"strconv"
	"strings"

	"github.com/coder-slots/coder-slots/agent/admin"
	"github.com/coder-slots/coder-slots/agent/ecosystem"
	"github.com/coder-slots/coder-slots/agent/internal/envpath"
	"github.com/coder-slots/coder-slots/agent/postgres"
	"github.com/coder-slots/coder-slots/agent/slot"
	"github.com/coder-slots/coder-slots/agent/state"
	"github.com/coder-slots/coder-slots/agent/supervisor"
)

// The agent exports its processes as PM2's ecosystem file.
var _ admin.Exporter = (*Agent)(nil)

// adminServer is the admin panel's app name in the ecosystem file, as the
// old setup named it.
const adminServer = "admin-server"

// Ecosystem is the whole process set as PM2's ecosystem file: the admin
// panel (slotagent itself, registered but not started: it owns the slot
// ports and would supervise the apps again), each slot as its current
// release or its standalone placeholder, and the Coder agent and
// PostgreSQL as the agent runs them. Env values are masked unless reveal.
func (a *Agent) Ecosystem(reveal bool) (ecosystem.File, error) {
	bin, err := os.Executable()
	if err != nil {
		return ecosystem.File{}, fmt.Errorf("find the slotagent binary: %w", err)
	}
	f := ecosystem.File{Revealed: reveal}
	logDir, pol := a.cfg.LogDir(), a.cfg.Policy
	adminApp := ecosystem.NewApp(adminServer, []string{bin, "run"}, pol, logDir, adminServer)
	adminApp.Env = map[string]string{"SLOTAGENT_DATA_DIR": a.cfg.DataDir, "SLOTAGENT_BIND": a.cfg.Bind,
		"ADMIN_PORT": strconv.Itoa(a.cfg.AdminPort), "ADMIN_URL": a.cfg.AdminURL}
	no := false
	adminApp.Autostart = &no
	f.Notes = append(f.Notes, adminServer+" is slotagent itself, which also owns the slot ports and supervises the apps:",
		"it is registered but not started (autostart: false). Run either it alone or the slot apps, not both.")
	f.Apps = append(f.Apps, adminApp)
	for _, sc := range a.cfg.Slots {
		name := slot.ProcessName(sc.Name)
		env := map[string]string{"PORT": strconv.Itoa(sc.Port), "SLOT_NAME": sc.Name, "SLOT_URL": sc.URL}
		ss := a.Slot(sc.Name)
		rel, ok := ss.Find(ss.Current)
		if ok && ss.Desired == state.DesiredRunning && rel.Static != "" {
			f.Notes = append(f.Notes, fmt.Sprintf("%s: release %s is a static site (%s) that slotagent serves itself: exported as its placeholder", name, rel.ID, rel.Static))
		} else if ok && ss.Desired == state.DesiredRunning {
			if st, err := os.Stat(rel.Dir); err == nil && st.IsDir() {
				app := ecosystem.NewApp(name, slot.ShellArgv(rel.Command), pol, logDir, name)
				app.Cwd = rel.Dir
				app.Env = a.releaseEnv(sc.Name, toSlotRelease(rel, ss.Env), reveal)
				maps.Copy(app.Env, env)
				if len(rel.Path) > 0 {
					app.Env["PATH"] = envpath.Join(rel.Path, os.Getenv("PATH"))
				}
				if rel.Plan != "" {
					f.Notes = append(f.Notes, fmt.Sprintf("%s: release %s, %s", name, rel.ID, rel.Plan))
				}
				f.Apps = append(f.Apps, app)
				continue
			}
			f.Notes = append(f.Notes, fmt.Sprintf("%s: the folder %s of release %s is gone: exported as its placeholder", name, rel.Dir, rel.ID))
		}
		app := ecosystem.NewApp(name, []string{bin, "placeholder", sc.Name, "--port", strconv.Itoa(sc.Port)}, pol, logDir, name)
		env["SLOTAGENT_BIND"], env["ADMIN_URL"] = a.cfg.Bind, a.cfg.AdminURL
		env["SLOT_"+strings.ToUpper(sc.Name)+"_URL"] = sc.URL
		app.Env = env
		f.Apps = append(f.Apps, app)
	}
	for _, name := range []string{CoderAgentName, postgres.ProcessName} {
		if p, ok := a.sup.Get(name); ok {
			f.Apps = append(f.Apps, supervisedApp(p.Spec(), logDir))
		}
	}
	return f, nil
}

// releaseEnv is the env a release's app gets from the slot (its database's
// and its own), each value masked unless reveal.
func (a *Agent) releaseEnv(name string, rel slot.Release, reveal bool) map[string]string {
	env := map[string]string{}
	for _, vars := range []map[string]string{a.pg.SlotEnv(name), rel.Env} {
		for k, v := range vars {
			env[k] = ecosystem.Secret(v, reveal)
		}
	}
	return env
}

// supervisedApp is a process the agent supervises, as it runs it, with
// the env the agent shows of it (secrets masked: PM2 passes its own
// environment, as the agent does).
func supervisedApp(spec supervisor.Spec, logDir string) ecosystem.App {
	log := spec.Log
	if log == "" {
		log = spec.Name
	}
	app := ecosystem.NewApp(spec.Name, spec.Command, spec.Policy, logDir, log)
	app.Cwd, app.Env = spec.Dir, spec.ShownEnv
	return app
}
