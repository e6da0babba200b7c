#!/bin/sh
# The tables' owner of compose.yaml: an ordinary role that owns the database `tasktrail`, not the
# cluster's superuser. The postgres image runs this once, as POSTGRES_USER (its superuser, which
# nothing else uses), when the db service starts on an empty volume
# (/docker-entrypoint-initdb.d); a volume made before keeps its roles.
#
# Its privileges: the least `tasktrail db upgrade --service-login tasktrail_api` works with (the
# first two), and one for /readyz:
# - LOGIN, and the database's ownership: it migrates, and so owns the tables.
# - CREATEROLE: the migrations make the NOLOGIN role tasktrail_service (0012) and --service-login
#   makes the api's login and grants it tasktrail_service. Since PostgreSQL 16 a CREATEROLE role
#   manages only the roles it made (or holds ADMIN OPTION on): no superuser, no other's role.
# - Membership in pg_read_all_stats: the owner sees every role's sessions in pg_stat_activity,
#   which /readyz asks of it (through a function that runs with the owner's rights: how long
#   other roles' transactions hold the audit feed back). Read-only statistics, for a role that
#   is no network-facing process and owns the data anyway; the api's login is not given it.
#
# The owner's password crosses the local socket once, in this statement, while the server
# initialises; the api's login gets only a SCRAM verifier (db upgrade --service-login).
# Not `set -e`: the image sources this file when it is not executable; psql's ON_ERROR_STOP
# and its exit status stop the initialisation on any error either way.
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "${POSTGRES_DB:-$POSTGRES_USER}" \
    --set owner_password="${TASKTRAIL_OWNER_PASSWORD:?set TASKTRAIL_OWNER_PASSWORD}" <<'SQL'
CREATE ROLE tasktrail LOGIN CREATEROLE PASSWORD :'owner_password';
CREATE DATABASE tasktrail OWNER tasktrail;
GRANT pg_read_all_stats TO tasktrail;
SQL
