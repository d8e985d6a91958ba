-- Keeps audit.trail_complete_since true for a table enable_tracking is about to track (or
-- keep tracking); called by enable_tracking_keys before it (re)makes the triggers.
-- - Tracking that starts anew (no audit trigger yet) may follow a gap: an old mark and an
--   unfinished snapshot go.
-- - An audit trigger disabled (ALTER TABLE ... DISABLE TRIGGER, which the event trigger
--   follows), made replica-only (ENABLE REPLICA TRIGGER), or dropped (DROP TRIGGER, seen
--   when tracking is made whole again): changes went or go unrecorded, so the mark goes
--   (audit.records_every_change).
-- - A table without a mark that holds no row is complete from now on (how = 'empty'):
--   every row it will hold is recorded. Before it is taken for empty, a SHARE lock waits
--   for writers in flight, so that "no row" includes them, and holds new ones until this
--   transaction ends (a table that has rows is not locked).
-- ("select 1": Citus cannot plan a distributed "select from" without columns.)
-- row_security = off: a table whose rows a policy hides from this role is never taken for
-- empty (the check fails, and is skipped like one this role may not read or lock).
create or replace function audit.note_trail_start(target regclass)
returns void
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
set row_security = off
as $$
declare
    empty boolean;
begin
    if not audit.records_every_change(target) then
        delete from audit.trail_complete_since m where m.table_oid = target;
        delete from audit.snapshot_progress p where p.table_oid = target;
        -- enable_tracking keeps a disabled (or replica-only) audit trigger as it is.
        if exists (
            select from pg_trigger t
            where t.tgrelid = target and not t.tgisinternal
                and audit.is_tracking_function(t.tgfoid) and t.tgenabled not in ('O', 'A')
        ) then
            return;
        end if;
    end if;
    if exists (select from audit.trail_complete_since m where m.table_oid = target) then
        return;
    end if;
    begin
        -- Rows seen without the lock: not empty, and no lock taken.
        execute 'select not exists (select 1 from only ' || target::text || ')' into empty;
        if empty then
            execute 'lock table only ' || target::text || ' in share mode';
            execute 'select not exists (select 1 from only ' || target::text || ')' into empty;
        end if;
    exception when insufficient_privilege then
        return;
    end;
    if empty then
        insert into audit.trail_complete_since (table_oid, since, after_id, how)
        values (target, now(), audit.last_audit_id(), 'empty');
    end if;
end
$$;

revoke all on function audit.note_trail_start(regclass) from public;
