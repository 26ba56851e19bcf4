#!/bin/sh
# Write PgBouncer's auth file from the environment (never baked into the image),
# then become PgBouncer so it receives the stop signal directly.
set -eu
: "${DB_USER:?DB_USER must be set}"
: "${DB_PASSWORD:?DB_PASSWORD must be set (see .env.example)}"
umask 077
mkdir -p /tmp/pgbouncer
printf '"%s" "%s"\n' "$DB_USER" "$DB_PASSWORD" >/tmp/pgbouncer/userlist.txt
exec pgbouncer /etc/pgbouncer/pgbouncer.ini
