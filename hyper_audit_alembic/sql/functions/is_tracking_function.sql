-- Whether a trigger function is one of the audit trail's own: a trigger is an audit
-- trigger exactly when it calls one of these, whatever its name. Nobody but the audit's
-- owner can attach them (EXECUTE is revoked, schema audit has no USAGE for public), while
-- any table owner or TRIGGER holder can name a trigger of its own audit_insert: so the
-- name proves nothing, the function everything.
create or replace function audit.is_tracking_function(function_oid oid)
returns boolean
language sql
stable
set search_path = pg_catalog, pg_temp
as $$
    select function_oid in (
        'audit.record_row_change()'::regprocedure,
        'audit.record_key_change()'::regprocedure,
        'audit.record_truncate()'::regprocedure,
        'audit.citus_row_change()'::regprocedure
    )
$$;

revoke all on function audit.is_tracking_function(oid) from public;
