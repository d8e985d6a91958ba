-- The text a record id is the UUID v5 of: the jsonb array '["<table oid>", "<pk1>", ...]'
-- of the table oid and the primary-key values as text. pkey_cols may have any lower bound
-- (trigger arguments start at 0). One to three key columns are spelled out so that this
-- stays a plain expression the planner inlines into the trigger's queries (stable, like
-- jsonb_build_array); longer keys take the general path. Operators are qualified: the
-- text is parsed where it is inlined, under the caller's search_path.
create or replace function audit.record_id_text(table_oid oid, pkey_cols text[], rec jsonb)
returns text
language sql
stable
parallel safe
as $$
    select case
        when pg_catalog.cardinality(pkey_cols) operator(pg_catalog.=) 1 then
            pg_catalog.jsonb_build_array(
                table_oid::text,
                rec operator(pg_catalog.->>) pkey_cols[pg_catalog.array_lower(pkey_cols, 1)]
            )::text
        when pg_catalog.cardinality(pkey_cols) operator(pg_catalog.=) 2 then
            pg_catalog.jsonb_build_array(
                table_oid::text,
                rec operator(pg_catalog.->>) pkey_cols[pg_catalog.array_lower(pkey_cols, 1)],
                rec operator(pg_catalog.->>)
                    pkey_cols[pg_catalog.array_lower(pkey_cols, 1) operator(pg_catalog.+) 1]
            )::text
        when pg_catalog.cardinality(pkey_cols) operator(pg_catalog.=) 3 then
            pg_catalog.jsonb_build_array(
                table_oid::text,
                rec operator(pg_catalog.->>) pkey_cols[pg_catalog.array_lower(pkey_cols, 1)],
                rec operator(pg_catalog.->>)
                    pkey_cols[pg_catalog.array_lower(pkey_cols, 1) operator(pg_catalog.+) 1],
                rec operator(pg_catalog.->>)
                    pkey_cols[pg_catalog.array_lower(pkey_cols, 1) operator(pg_catalog.+) 2]
            )::text
        else audit.record_id_text_any(table_oid, pkey_cols, rec)
    end
$$;

revoke all on function audit.record_id_text(oid, text[], jsonb) from public;

grant execute on function audit.record_id_text(oid, text[], jsonb) to public;
