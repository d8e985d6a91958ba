-- pg_trigger.tgargs as an array of its arguments.
create or replace function audit.trigger_argument_list(args bytea)
returns text[]
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
declare
    rest bytea := args;
    found text[] := '{}';
    pos integer;
begin
    while rest is not null and length(rest) > 0 loop
        pos := position('\x00'::bytea in rest);
        found := found || convert_from(substring(rest from 1 for pos - 1), 'UTF8');
        rest := substring(rest from pos + 1);
    end loop;
    return found;
end
$$;

revoke all on function audit.trigger_argument_list(bytea) from public;
