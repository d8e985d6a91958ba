-- The UPDATE of a row whose primary key changed (trigger audit_key_change, row level,
-- beside the statement triggers): written as it happens, like the reference does, and
-- noted for the statement trigger, which pairs the other rows by key. The note goes into
-- audit.key_change_state, which only the audit owner can write (a custom setting, as in
-- version 2, could be set by the writer). Values are rendered under the canonical output
-- settings below, whatever the writer's (see record_row_change.sql).
create or replace function audit.record_key_change()
returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
set extra_float_digits = 1
set bytea_output = 'hex'
set DateStyle = 'ISO, MDY'
set IntervalStyle = 'postgres'
set TimeZone = 'UTC'
set lc_monetary = 'C'
as $$
declare
    new_rec jsonb := to_jsonb(new);
    old_rec jsonb := to_jsonb(old);
    written bigint;
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
    -- The WHEN clause compares binary images: a key whose bytes changed but whose text did
    -- not (an array's lower bound, say) changed no record id; the statement trigger pairs
    -- that row by its key text.
    if audit.record_id_text(tg_relid, keys, new_rec) collate "C"
            = audit.record_id_text(tg_relid, keys, old_rec) collate "C" then
        return null;
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
    -- The first key-change row of this statement (the statement's row and statement
    -- triggers run at the same depth, nested statements deeper).
    insert into audit.key_change_state as s (backend_pid, table_oid, depth, first_id)
    values (pg_backend_pid(), tg_relid, pg_trigger_depth(), written)
    on conflict (backend_pid, table_oid, depth) do update set first_id = excluded.first_id
        where s.first_id is null;
    return null;
end
$$;

revoke all on function audit.record_key_change() from public;
