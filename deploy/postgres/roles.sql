-- Least privilege for hookwarden on PostgreSQL.
--
-- Two roles: an owner that runs migrations (`hookwarden migrate`) and the
-- service account the replicas use (`HOOKWARDEN_RUN_MIGRATIONS=false`), which
-- may read and write rows in schema hook and nothing else. Tested by
-- crates/cli/tests/process.rs (least_privilege_service_role).
--
-- Run as a superuser; replace the passwords (psql: -v owner_password=... -v svc_password=...).

CREATE ROLE hook_owner LOGIN PASSWORD :'owner_password';
CREATE ROLE hook_svc LOGIN PASSWORD :'svc_password';

-- The owner creates schema hook (and sqlx's bookkeeping inside it) on `hookwarden migrate`.
GRANT CREATE ON DATABASE :"dbname" TO hook_owner;
GRANT CONNECT ON DATABASE :"dbname" TO hook_svc;

-- After `hookwarden migrate` as hook_owner, run the grants below (as hook_owner or a superuser):
--   \i deploy/postgres/grants.sql
