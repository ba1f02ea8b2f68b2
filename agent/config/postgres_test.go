package config

import "testing"

func TestPostgresSettings(t *testing.T) {
	clearEnv(t)
	c := mustLoad(t, dataFlags(t), "")
	if c.Postgres != (Postgres{Enabled: PostgresAuto, Port: 5432}) {
		t.Errorf("defaults: %+v", c.Postgres)
	}

	t.Setenv("SLOTAGENT_POSTGRES_ENABLED", "FALSE")
	t.Setenv("SLOTAGENT_POSTGRES_BIN_DIR", " /opt/pg/bin ")
	t.Setenv("SLOTAGENT_POSTGRES_PORT", "3001") // a slot's port, but the server is off
	c = mustLoad(t, dataFlags(t), "")
	if c.Postgres != (Postgres{Enabled: PostgresOff, BinDir: "/opt/pg/bin", Port: 3001}) {
		t.Errorf("from env: %+v", c.Postgres)
	}

	clearEnv(t)
	file := writeFile(t, "slotagent.yaml", "postgres:\n  enabled: true\n  port: 6543\n")
	c = mustLoad(t, dataFlags(t), file)
	if c.Postgres != (Postgres{Enabled: PostgresOn, Port: 6543}) {
		t.Errorf("from file: %+v", c.Postgres)
	}
}

func TestPostgresBadValues(t *testing.T) {
	for name, tt := range map[string]struct {
		env  map[string]string
		want []string
	}{
		"enabled maybe": {map[string]string{"SLOTAGENT_POSTGRES_ENABLED": "maybe"}, []string{"postgres.enabled", "SLOTAGENT_POSTGRES_ENABLED", `"maybe"`}},
		"port 0":        {map[string]string{"SLOTAGENT_POSTGRES_PORT": "0"}, []string{"postgres.port", "SLOTAGENT_POSTGRES_PORT"}},
		"port of a slot": {map[string]string{"SLOTAGENT_POSTGRES_PORT": "3002"},
			[]string{"postgres.port", "SLOTAGENT_POSTGRES_PORT", "slots.b.port", "3002"}},
	} {
		t.Run(name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			c, err := Load(dataFlags(t), "")
			checkErr(t, c, err, tt.want...)
		})
	}
}
