-- Drops every audit trigger of a table (of this version and earlier ones), and the
-- key-change functions no trigger uses any more; true when there was a trigger. An audit
-- trigger is one that calls an audit trigger function, whatever its name: a trigger of
-- another role under an audit trigger's name is never dropped. Citus refuses DROP TRIGGER
-- on a distributed table without citus.enable_unsafe_triggers: set while they are dropped
-- from a Citus table, and put back after.
create or replace function audit.drop_tracking_triggers(target regclass)
returns boolean
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    trigger_name name;
    unused regprocedure;
    found_one boolean := false;
    unsafe_triggers text := current_setting('citus.enable_unsafe_triggers', true);
    on_citus boolean := audit.citus_kind(target) is not null;
begin
    if on_citus then
        perform set_config('citus.enable_unsafe_triggers', 'on', true);
    end if;
    for trigger_name in
        select t.tgname from pg_trigger t
        where t.tgrelid = target and not t.tgisinternal
            and audit.is_tracking_function(t.tgfoid)
        order by t.tgname
    loop
        execute 'drop trigger ' || quote_ident(trigger_name) || ' on ' || target::text;
        found_one := true;
    end loop;
    if on_citus then
        perform set_config('citus.enable_unsafe_triggers', unsafe_triggers, true);
    end if;
    for unused in
        select p.oid::regprocedure from pg_proc p
        where p.pronamespace = 'audit'::regnamespace
            and left(p.proname, 12) = 'key_changed_'
            and not exists (
                select from pg_depend d
                where d.classid = 'pg_trigger'::regclass
                    and d.refclassid = 'pg_proc'::regclass and d.refobjid = p.oid
            )
    loop
        execute 'drop function ' || unused::text;
    end loop;
    return found_one;
end
$$;

revoke all on function audit.drop_tracking_triggers(regclass) from public;
