-- The CREATE TRIGGER statement of one audit trigger: the one builder of audit triggers
-- (enable_tracking_keys uses it, so every path that makes them anew). Built from catalog
-- facts and constants only: the table as regclass text, each argument (key columns from
-- the primary key, then the options enable_tracking chose) as quote_literal(), the
-- key-change condition's name as quote_ident(). Never from pg_get_triggerdef() text or any
-- other text a table owner or TRIGGER holder wrote. The name says the events, level and
-- transition tables; a name that is not an audit trigger's is an error.
create or replace function audit.tracking_trigger_sql(
    target regclass, trigger_name text, args text[]
)
returns text
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    arg_list text := coalesce(
        (select string_agg(quote_literal(a.arg), ', ' order by a.ord)
        from unnest(args) with ordinality as a (arg, ord)),
        ''
    );
    keys text[] := args[1:coalesce(array_position(args, '') - 1, cardinality(args))];
    -- (audit_citus_*: the table's oid, schema and name come first; they have no
    -- key-change condition, so keys is not used for them.)
    key_changed regprocedure;
    key_changed_name text;
begin
    if trigger_name = 'audit_key_change' then
        -- Made first (if missing), then looked up: a statement that both made and read it
        -- would not see it.
        key_changed := audit.key_change_function(keys, true);
        key_changed_name := (select p.proname::text from pg_proc p where p.oid = key_changed);
    end if;
    return case trigger_name
        when 'audit_insert' then
            'create trigger audit_insert after insert on ' || target::text
            || ' referencing new table as audit_new'
            || ' for each statement execute function audit.record_row_change(' || arg_list || ')'
        when 'audit_update' then
            'create trigger audit_update after update on ' || target::text
            || ' referencing old table as audit_old new table as audit_new'
            || ' for each statement execute function audit.record_row_change(' || arg_list || ')'
        when 'audit_delete' then
            'create trigger audit_delete after delete on ' || target::text
            || ' referencing old table as audit_old'
            || ' for each statement execute function audit.record_row_change(' || arg_list || ')'
        when 'audit_key_change' then
            'create trigger audit_key_change after update on ' || target::text
            || ' for each row when (audit.' || quote_ident(key_changed_name) || '(old, new))'
            || ' execute function audit.record_key_change(' || arg_list || ')'
        when 'audit_row_change' then
            'create trigger audit_row_change after insert or update or delete on '
            || target::text
            || ' for each row execute function audit.record_row_change(' || arg_list || ')'
        when 'audit_citus_insert' then
            'create trigger audit_citus_insert after insert on ' || target::text
            || ' referencing new table as audit_new'
            || ' for each statement execute function audit.citus_row_change(' || arg_list || ')'
        when 'audit_citus_delete' then
            'create trigger audit_citus_delete after delete on ' || target::text
            || ' referencing old table as audit_old'
            || ' for each statement execute function audit.citus_row_change(' || arg_list || ')'
        when 'audit_citus_update' then
            'create trigger audit_citus_update after update on ' || target::text
            || ' for each row execute function audit.citus_row_change(' || arg_list || ')'
        when 'audit_truncate' then
            'create trigger audit_truncate after truncate on ' || target::text
            || ' for each statement execute function audit.record_truncate()'
    end;
end
$$;

revoke all on function audit.tracking_trigger_sql(regclass, text, text[]) from public;
