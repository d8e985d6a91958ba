-- The SQL expression of an audit row's canonical text, for the row alias `alias`: the text
-- audit.seal() hashes and audit.verify() recomputes (docs/compliance.md defines it):
--
--   json_build_array(id, record_id, old_record_id, op, ts, table_schema, table_name,
--                    record, old_record, actor, context, transaction_id)
--
-- rendered with TimeZone UTC, and, where audit.record_version has other columns (such as
-- Supabase's auth_uid and auth_role), one more element: a JSON object of those of them
-- that are not null, in name order, appended only when it is not empty (so a column added
-- later, null in the rows sealed before it, does not change their text). table_oid is left
-- out: a dump and restore changes it. Built from the catalog of audit.record_version, whose
-- columns only the audit owner can change; names are quoted with quote_ident().
create or replace function audit.canonical_row_sql(alias text)
returns text
language sql
stable
set search_path = pg_catalog, pg_temp
as $$
    with design (name, position) as (
        select x.name, x.position
        from pg_catalog.unnest(array[
            'id', 'record_id', 'old_record_id', 'op', 'ts', 'table_schema', 'table_name',
            'record', 'old_record', 'actor', 'context', 'transaction_id'
        ]) with ordinality as x (name, position)
    ),
    other as (
        select a.attname::text as name
        from pg_catalog.pg_attribute a
        where a.attrelid = 'audit.record_version'::pg_catalog.regclass
            and a.attnum > 0 and not a.attisdropped
            and a.attname::text not in (select d.name from design d)
            and a.attname <> 'table_oid'
    ),
    fixed as (
        select pg_catalog.string_agg(
            case when exists (
                select from pg_catalog.pg_attribute a
                where a.attrelid = 'audit.record_version'::pg_catalog.regclass
                    and a.attname = d.name and not a.attisdropped
            ) then pg_catalog.quote_ident(alias) || '.' || pg_catalog.quote_ident(d.name) else 'null' end,
            ', ' order by d.position) as list
        from design d
    ),
    extra as (
        select pg_catalog.string_agg(
            pg_catalog.quote_literal(o.name) || ', ' || pg_catalog.quote_ident(alias) || '.' || pg_catalog.quote_ident(o.name), ', ' order by o.name) as pairs
        from other o
    )
    select case
        when e.pairs is null then 'pg_catalog.json_build_array(' || f.list || ')'
        else 'case when pg_catalog.json_strip_nulls(pg_catalog.json_build_object(' || e.pairs
            || '))::text = ''{}'' then pg_catalog.json_build_array(' || f.list
            || ') else pg_catalog.json_build_array(' || f.list
            || ', pg_catalog.json_strip_nulls(pg_catalog.json_build_object(' || e.pairs || '))) end'
    end
    from fixed f, extra e
$$;

revoke all on function audit.canonical_row_sql(text) from public;
