package daemon

import (
	"context"
	"fmt"

	"github.com/coder-slots/coder-slots/agent/admin"
	"github.com/coder-slots/coder-slots/agent/config"
	"github.com/coder-slots/coder-slots/agent/postgres"
)

// The agent answers the admin API's database endpoints.
var _ admin.Databases = (*Agent)(nil)

// preparePostgres finds PostgreSQL and checks its cluster, making it on
// first boot, before the slots take their database env. A server that
// cannot run leaves the agent running without it.
func (a *Agent) preparePostgres() {
	a.pg = postgres.New(context.Background(), postgres.Options{
		Settings: a.cfg.Postgres,
		Dir:      postgres.Dir(a.cfg.DataDir),
		Slots:    config.SlotNames,
	}, a.log)
	if off := a.pg.Off(); off != "" {
		a.log.Info("PostgreSQL is off", "reason", off)
	}
}

// runPostgres starts the server and waits for it, at most
// postgres.ReadyTimeout, so that the apps find their databases. A server
// that cannot run is a problem at start.
func (a *Agent) runPostgres() {
	if p := a.pg.Problem(); p != "" {
		a.log.Error(p)
		a.warnings = append(a.warnings, p)
		return
	}
	if err := a.pg.Run(a.sup, postgres.ReadyTimeout); err != nil {
		a.log.Error("PostgreSQL is not ready", "err", err)
	}
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
