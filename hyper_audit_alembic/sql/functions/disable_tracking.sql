create or replace function audit.disable_tracking(target regclass)
returns void
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
begin
    -- Changes go unrecorded from now on: the trail is no longer complete (version 4), and a
    -- snapshot in progress stops. The column names last seen stay: a rename made while the
    -- table is not tracked is recorded when it is tracked again.
    delete from audit.trail_complete_since m where m.table_oid = target;
    delete from audit.snapshot_progress p where p.table_oid = target;
    if not audit.drop_tracking_triggers(target) then
        raise notice using message = 'audit.disable_tracking: ' || target::text || ' was not tracked';
    end if;
end
$$;

revoke all on function audit.disable_tracking(regclass) from public;
