create or replace function audit.disable_tracking(target regclass)
returns void
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
begin
    if not audit.drop_tracking_triggers(target) then
        raise notice using message = 'audit.disable_tracking: ' || target::text || ' was not tracked';
    end if;
end
$$;

revoke all on function audit.disable_tracking(regclass) from public;
