-- The UPDATE of a row whose primary key changed (trigger audit_key_change, row level,
-- beside the statement triggers): written as it happens, like the reference does, and
-- noted for the statement trigger, which pairs the other rows by key.
create or replace function audit.record_key_change()
returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    new_rec jsonb := to_jsonb(new);
    old_rec jsonb := to_jsonb(old);
    written bigint;
    marker text;
    keys text[] := tg_argv;
    sep integer := array_position(tg_argv, '');
    excluded text[];
begin
    -- Options (version 2): the key columns are the arguments before the empty one; the
    -- excluded columns are left out of both records.
    if sep is not null then
        keys := tg_argv[0:sep-1];
        excluded := array(
            select substr(a.arg, 9) from unnest(tg_argv[sep+1:tg_nargs]) as a (arg)
            where left(a.arg, 8) = 'exclude='
        );
        new_rec := new_rec - excluded;
        old_rec := old_rec - excluded;
    end if;
    insert into audit.record_version (
        record_id, old_record_id, op, table_oid, table_schema, table_name, record, old_record
    )
    values (
        audit.to_record_id(tg_relid, keys, new_rec),
        audit.to_record_id(tg_relid, keys, old_rec),
        'UPDATE',
        tg_relid,
        tg_table_schema,
        tg_table_name,
        new_rec,
        old_rec
    )
    returning id into written;
    marker := 'audit.key_change_' || tg_relid::text || '_' || pg_trigger_depth()::text;
    if coalesce(current_setting(marker, true), '') = '' then
        perform set_config(marker, written::text, true);
    end if;
    return null;
end
$$;

revoke all on function audit.record_key_change() from public;
