#!/bin/sh
# coder-slots: the module's stop script. When the workspace stops and the
# container's stop grace lets the Coder agent run its stop scripts, it stops
# slotagent cleanly (the slots drain, PostgreSQL shuts down, the state is
# saved) before the container goes.
command -v slotagent >/dev/null 2>&1 || exit 0
exec slotagent shutdown --data-dir "${SLOTAGENT_DATA_DIR:-$HOME/data/slotagent}"
