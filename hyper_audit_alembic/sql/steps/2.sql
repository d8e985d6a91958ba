-- Audit schema version 1 -> 2: who made each change, and why.
--
-- Every audit row gets:
--   actor          the application's actor for the transaction (audit_context(actor=...)),
--                  else the database role the session acts as;
--   context        the application's free-form context for the transaction (request id,
--                  endpoint, reason ...) as jsonb, else null;
--   transaction_id the id of the writing transaction (pg_current_xact_id(), PostgreSQL 13+),
--                  so that one transaction's rows can be found together.
-- Column defaults fill them, so the trigger functions are unchanged, and any writer of
-- audit rows gets them. The application sets the transaction-local settings
-- hyper_audit.actor and hyper_audit.context with set_config(name, value, true): nothing is
-- left in the session, so pooled connections (PgBouncer transaction pooling too) never
-- carry one transaction's values into the next.
--
-- Idempotent: every install runs it after steps/1.sql. The functions of version 2 come
-- from functions/, replayed after the steps. The text holds no '%' and no ':name'.

-- (version_guard.sql runs before this step: the installed version must be 1.)
do $$
begin
    if pg_catalog.current_setting('server_version_num')::integer < 130000 then
        raise exception using
            errcode = 'feature_not_supported',
            message = 'audit schema upgrade to version 2: PostgreSQL '
                || pg_catalog.current_setting('server_version')
                || ' has no xid8 transaction ids (pg_current_xact_id())',
            hint = 'Audit schema version 2 needs PostgreSQL 13 or later.';
    end if;
end
$$;

-- The columns first, without defaults: rows recorded before this upgrade keep nulls (a
-- default given with ADD COLUMN would be stamped on them: the migration's role as their
-- actor, the migration's transaction id, and a rewrite of the whole table for the
-- volatile pg_current_xact_id()). Adding nullable columns without a default touches only
-- the catalog, also on a TimescaleDB hypertable (compressed chunks included) or a
-- partitioned audit table.
alter table audit.record_version
    add column if not exists actor text,
    add column if not exists context jsonb,
    add column if not exists transaction_id xid8;

-- The defaults, for rows written from now on. Each is evaluated once per audit row, so
-- each is cheap: two reads of a setting, a jsonb parse of the (small) context text when
-- one is set, and the transaction's id, which it has already (it is writing a row).
--
-- The actor without an application context: the role the session acts as. Not
-- current_user: the audit triggers run SECURITY DEFINER, so inside them current_user is
-- the owner of the audit functions for every writer. session_user is the role that logged
-- in; when the session has switched roles with SET ROLE or SET LOCAL ROLE (as PostgREST /
-- Supabase do for each request: login role authenticator, request role authenticated or
-- anon) the setting "role" holds the role acted as, and SECURITY DEFINER does not change
-- it. So: the setting "role" unless it is 'none' (no SET ROLE; no role can be named none),
-- else session_user.
alter table audit.record_version
    alter column actor set default coalesce(
        nullif(pg_catalog.current_setting('hyper_audit.actor', true), ''),
        nullif(pg_catalog.current_setting('role'), 'none'),
        session_user::text
    ),
    alter column context set default
        nullif(pg_catalog.current_setting('hyper_audit.context', true), '')::jsonb,
    alter column transaction_id set default pg_catalog.pg_current_xact_id();

-- One transaction's rows. Partial: rows without a transaction id (those recorded before
-- this upgrade) are not indexed, so building it reads the table once and writes nothing
-- for them. The build blocks writes to the audit table while it reads; for a very large
-- audit table, create this index beforehand with CREATE INDEX CONCURRENTLY under the same
-- name and definition, and this statement leaves it as it is.
create index if not exists record_version_transaction_id
    on audit.record_version (transaction_id) where transaction_id is not null;

delete from audit.schema_version;

insert into audit.schema_version (version) values (2);
