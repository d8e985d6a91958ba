-- The option arguments of a tracked table's triggers (after the separator), '{}' if none.
-- Read from a trigger that calls audit.record_row_change() (or, on Citus,
-- audit.citus_row_change(), whose table oid, schema and name come before the key), whatever its name: a trigger
-- of another role under an audit trigger's name cannot forge options.
create or replace function audit.tracking_options(target regclass)
returns text[]
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
    found text[];
    pos integer;
begin
    found := audit.trigger_argument_list((
        select t.tgargs from pg_trigger t
        where t.tgrelid = target
            and t.tgfoid in (
                'audit.record_row_change()'::regprocedure,
                'audit.citus_row_change()'::regprocedure
            )
        order by t.tgname
        limit 1
    ));
    pos := array_position(found, '');
    if pos is null then
        return '{}';
    end if;
    return found[pos+1:cardinality(found)];
end
$$;

revoke all on function audit.tracking_options(regclass) from public;
