-- The trigger arguments enable_tracking gives a table with these key columns, in
-- pg_trigger.tgargs form, so a tracked table can be compared without parsing bytea.
create or replace function audit.trigger_arguments(pkey_cols text[])
returns bytea
language sql
immutable
as $$
    select pg_catalog.string_agg(
        pg_catalog.convert_to(k.col, 'UTF8') || '\x00'::bytea, ''::bytea order by k.ord
    )
    from pg_catalog.unnest(pkey_cols) with ordinality as k (col, ord)
$$;

revoke all on function audit.trigger_arguments(text[]) from public;
