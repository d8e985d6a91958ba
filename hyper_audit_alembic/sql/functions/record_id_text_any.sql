-- The general form of record_id_text below, for keys of any length.
create or replace function audit.record_id_text_any(table_oid oid, pkey_cols text[], rec jsonb)
returns text
language sql
stable
parallel safe
as $$
    select (
        pg_catalog.jsonb_build_array(table_oid::text)
        operator(pg_catalog.||) (
            select pg_catalog.jsonb_agg(rec operator(pg_catalog.->>) k.col order by k.ord)
            from pg_catalog.unnest(pkey_cols) with ordinality as k (col, ord)
        )
    )::text
$$;

revoke all on function audit.record_id_text_any(oid, text[], jsonb) from public;

grant execute on function audit.record_id_text_any(oid, text[], jsonb) to public;
