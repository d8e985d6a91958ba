-- The option arguments of a tracked table's triggers (after the separator), '{}' if none.
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
        where t.tgrelid = target and t.tgname in ('audit_row_change', 'audit_insert')
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
