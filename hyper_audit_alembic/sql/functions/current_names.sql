-- A record of a table, written by the audit row version_id, under today's column names:
-- the renames and drops of the table's columns recorded after it (audit.column_change,
-- before_id >= version_id) are applied in order, the renames of one step together. The
-- values of dropped columns are not lost: they come back in `dropped`, under the name the
-- column had when it was dropped (null when none). Columns added later are absent, as are
-- excluded ones. audit.table_as_of uses it; restore and revert do the same in Python.
create or replace function audit.current_names(
    table_oid oid, rec jsonb, version_id bigint, out record jsonb, out dropped jsonb
)
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
    step_id bigint;
    gone jsonb;
begin
    record := rec;
    dropped := null;
    if rec is null or jsonb_typeof(rec) <> 'object' then
        return;
    end if;
    for step_id in
        select distinct c.step from audit.column_change c
        where c.table_oid = current_names.table_oid and c.before_id >= current_names.version_id
        order by c.step
    loop
        select
            coalesce(jsonb_object_agg(coalesce(c.new_name::text, e.key), e.value)
                filter (where c.kind is distinct from 'drop'), '{}'),
            jsonb_object_agg(e.key, e.value) filter (where c.kind = 'drop')
        into record, gone
        from jsonb_each(current_names.record) as e (key, value)
        left join audit.column_change c
            on c.step = step_id and c.table_oid = current_names.table_oid
            and c.old_name = e.key;
        if gone is not null then
            dropped := coalesce(dropped, '{}') || gone;
        end if;
    end loop;
end
$$;

revoke all on function audit.current_names(oid, jsonb, bigint) from public;

grant execute on function audit.current_names(oid, jsonb, bigint) to public;
