-- Grants for the service account, after migrations created schema hook.
-- Run it as hook_owner or a superuser, and again after each `migrate`: the
-- default privileges below are for what hook_owner creates, whoever runs
-- this file.
-- Rows only: no DDL, no other schema. History tables stay append-only because
-- their triggers refuse UPDATE/DELETE whatever the grants say.
REVOKE ALL ON SCHEMA public FROM hook_svc;
GRANT USAGE ON SCHEMA hook TO hook_svc;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA hook TO hook_svc;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA hook TO hook_svc;
ALTER DEFAULT PRIVILEGES FOR ROLE hook_owner IN SCHEMA hook GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO hook_svc;
-- The claim path's functions (migration 0005). They run with the caller's
-- rights (SECURITY INVOKER), so they give nothing the grants above do not,
-- but one: hook.refresh_stale_statistics() (migration 0026) runs with the
-- owner's, because ANALYZE is the owner's. It takes no argument and
-- analyzes only the tables of schema hook whose statistics count under a
-- tenth of their rows; the replicas call it every 10 s.
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA hook TO hook_svc;
ALTER DEFAULT PRIVILEGES FOR ROLE hook_owner IN SCHEMA hook GRANT EXECUTE ON FUNCTIONS TO hook_svc;
