-- Audit schema version 2 -> 3: no role can silence, distort or escalate through the audit
-- trail (issue 12). Most of it is in the functions (replayed after the steps): trigger
-- functions with canonical output settings, key-change conditions on the keys' binary
-- images (key_change_function.sql also rewrites the conditions made by earlier versions),
-- triggers (re)made from catalog facts. This step adds what they keep.
--
-- audit.key_change_state: the hand-off from the row trigger audit_key_change to the
-- statement trigger audit_update of the same statement (the id of the first audit row
-- that audit_key_change wrote), which version 2 kept in a custom setting that any writer
-- could set. Only the audit owner writes and reads it (the trigger functions are SECURITY
-- DEFINER; nobody else has any privilege on it). One row per backend, tracked table and
-- trigger depth, updated in place (first_id null between statements); a failed statement
-- leaves nothing, as the table is transactional. Unlogged: it holds nothing after a
-- statement ends, so a crash loses nothing and no WAL is written for it. A row stays for
-- each backend process id and table that ever changed a key (process ids are reused);
-- `truncate audit.key_change_state` between statements is always safe.
--
-- Idempotent: every install runs it after steps/2.sql. The text holds no '%' and no ':name'.

-- (version_guard.sql runs before this step: the installed version must be 2.)
create unlogged table if not exists audit.key_change_state (
    backend_pid integer not null,
    table_oid oid not null,
    depth integer not null,
    first_id bigint,
    primary key (backend_pid, table_oid, depth)
);

revoke all on audit.key_change_state from public;

comment on table audit.key_change_state is
    'hyper_audit: the first audit row audit_key_change wrote in the running statement, per '
    'backend, table and trigger depth (for audit_update; null between statements).';

delete from audit.schema_version;

insert into audit.schema_version (version) values (3);
