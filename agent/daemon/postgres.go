package daemon

import (
	"context"
	"fmt"

	"github.com/coder-slots/coder-slots/agent/admin"
	"github.com/coder-slots/coder-slots/agent/config"
	"github.com/coder-slots/coder-slots/agent/postgres"
	"github.com/coder-slots/coder-slots/agent/slot"
)

// The agent answers the admin API's database endpoints.
var _ admin.Databases = (*Agent)(nil)

// preparePostgres finds PostgreSQL and its credentials, which the slots
// hand to their apps; it runs nothing (see startPostgres).
func (a *Agent) preparePostgres() {
	a.pg = postgres.New(postgres.Options{
		Settings: a.cfg.Postgres,
		Dir:      postgres.Dir(a.cfg.DataDir),
		Slots:    config.SlotNames,
	}, a.log)
	if off := a.pg.Off(); off != "" {
		a.log.Info("PostgreSQL is off", "reason", off)
	}
	if p := a.pg.Problem(); p != "" {
		a.log.Error(p)
	}
}

// startPostgres sets PostgreSQL up in the background (initdb on first
// boot, the server, the databases), once the ports answer.
func (a *Agent) startPostgres() { a.pg.Start(a.sup) }

// waitsForDatabase reports whether rel uses the slot's database: its
// DATABASE_URL is the one the agent gives (not one of its own, pointing
// elsewhere), so it should start once the server answers.
func (a *Agent) waitsForDatabase(name string, rel slot.Release) bool {
	own := a.pg.SlotEnv(name)["DATABASE_URL"]
	url, set := rel.Env["DATABASE_URL"]
	return own != "" && (!set || url == own)
}

// databaseReady waits until PostgreSQL is ready, at most
// postgres.ReadyTimeout.
func (a *Agent) databaseReady(ctx context.Context) error {
	return a.pg.WaitReady(ctx, postgres.ReadyTimeout)
}

// Database describes PostgreSQL and every database, without secrets.
func (a *Agent) Database(ctx context.Context) postgres.Status { return a.pg.Status(ctx) }

// ResetDatabase empties a slot's database (drop and create) and restarts
// the slot's app, so that it sets its tables up again. The slot is reserved
// meanwhile: a deploy cannot start against a half-reset database.
func (a *Agent) ResetDatabase(ctx context.Context, name string) (msg string, err error) {
	err = a.deployer.Exclusive(name, "database reset", func() error {
		if err := a.pg.Reset(ctx, name); err != nil {
			return err
		}
		msg = fmt.Sprintf("database %s of slot %s is empty again", postgres.SlotRole(name), name)
		if a.slots[name].Restart() {
			msg += "; its app was restarted"
		}
		return nil
	})
	return msg, err
}
