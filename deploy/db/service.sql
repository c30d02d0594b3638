-- service.sql: provisions one service's login role and schema in the current database.
--
-- Usage (as a superuser, connected to the service's database):
--   psql -v ON_ERROR_STOP=1 -v service=catalog [-v password=secret] -f deploy/db/service.sql
--
-- Idempotent: the role and schema are created only when missing; the password
-- is (re)set only when given. The role owns its schema and nothing else:
-- PUBLIC loses everything on schema public and everything on the database
-- except CONNECT, so one service's role cannot read or write another's data.
-- Used by the test harness, the local runner and compose alike.

\set ON_ERROR_STOP on
SET client_min_messages = warning;
\if :{?service}
\else
DO $$ BEGIN RAISE EXCEPTION 'service.sql: pass -v service=<name>'; END $$;
\endif

SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'service') AS need_role \gset
\if :need_role
CREATE ROLE :"service" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;
\endif

\if :{?password}
ALTER ROLE :"service" LOGIN PASSWORD :'password';
\endif

CREATE SCHEMA IF NOT EXISTS :"service" AUTHORIZATION :"service";
ALTER SCHEMA :"service" OWNER TO :"service";
REVOKE ALL ON SCHEMA :"service" FROM PUBLIC;

REVOKE ALL ON SCHEMA public FROM PUBLIC;
REVOKE ALL ON DATABASE :"DBNAME" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"DBNAME" TO PUBLIC;
