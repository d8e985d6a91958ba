-- Puts these option arguments (none: '{}') on a tracked table's audit triggers, keeping
-- their key columns. Version 2 re-created each trigger by editing its pg_get_triggerdef()
-- text, which let a table owner's trigger arguments run as the audit's owner; since
-- version 3 every audit trigger is made by audit.enable_tracking_keys (from catalog facts,
-- through audit.tracking_trigger_sql), which this calls. A table without audit triggers
-- stays untracked.
create or replace function audit.set_tracking_options(target regclass, options text[])
returns void
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
begin
    if exists (
        select from pg_trigger t
        where t.tgrelid = target
            and t.tgfoid in (
                'audit.record_row_change()'::regprocedure,
                'audit.citus_row_change()'::regprocedure
            )
    ) then
        perform audit.enable_tracking_keys(target, options);
    end if;
end
$$;

revoke all on function audit.set_tracking_options(regclass, text[]) from public;
