-- Puts these option arguments (none: '{}') on a tracked table's audit triggers, keeping
-- their key column arguments, by re-creating each trigger whose arguments differ.
create or replace function audit.set_tracking_options(target regclass, options text[])
returns void
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    trigger_row record;
    definition text;
    call text;
    new_args text[];
    sep integer;
begin
    for trigger_row in
        select t.oid, t.tgname, t.tgfoid, t.tgargs from pg_trigger t
        where t.tgrelid = target
            and t.tgname in (
                'audit_row_change', 'audit_insert', 'audit_update', 'audit_delete',
                'audit_key_change'
            )
        order by t.tgname
    loop
        new_args := audit.trigger_argument_list(trigger_row.tgargs);
        sep := array_position(new_args, '');
        if sep is not null then
            new_args := new_args[1:sep-1];
        end if;
        if cardinality(options) > 0 then
            new_args := new_args || array[''] || options;
        end if;
        if audit.trigger_arguments(new_args) is not distinct from trigger_row.tgargs then
            continue;
        end if;
        definition := pg_get_triggerdef(trigger_row.oid);
        call := ' EXECUTE FUNCTION ' || trigger_row.tgfoid::regproc::text || '(';
        -- The definition up to its last such call (the call ends it).
        definition := left(
            definition,
            length(definition) - strpos(reverse(definition), reverse(call)) - length(call) + 1
        );
        execute 'drop trigger ' || quote_ident(trigger_row.tgname) || ' on ' || target::text;
        execute definition || call
            || (select string_agg(quote_literal(a), ', ') from unnest(new_args) as a) || ')';
    end loop;
end
$$;

revoke all on function audit.set_tracking_options(regclass, text[]) from public;
