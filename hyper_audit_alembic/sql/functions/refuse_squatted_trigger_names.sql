-- Refuses to track a table where a trigger that is not the audit's (another function)
-- holds the name of an audit trigger the table needs. Such a trigger is never trusted:
-- not read, not re-created, not dropped (it is its owner's, and dropping it would lose
-- their work); the table's owner renames or drops it.
create or replace function audit.refuse_squatted_trigger_names(target regclass, wanted text[])
returns void
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
    squatted record;
begin
    select t.tgname::text as name, t.tgfoid::regprocedure::text as function
    into squatted
    from pg_trigger t
    where t.tgrelid = target and not t.tgisinternal and t.tgname = any (wanted)
        and not audit.is_tracking_function(t.tgfoid)
    order by t.tgname
    limit 1;
    if found then
        raise exception using
            errcode = 'duplicate_object',
            message = 'audit.enable_tracking: table ' || target::text || ' has a trigger '
                || quote_ident(squatted.name) || ' that runs ' || squatted.function
                || ', not the audit trail''s function',
            hint = 'Rename or drop trigger ' || quote_ident(squatted.name) || ' on '
                || target::text || ' (its owner can), then track ' || target::text
                || ' again.';
    end if;
end
$$;

revoke all on function audit.refuse_squatted_trigger_names(regclass, text[]) from public;
