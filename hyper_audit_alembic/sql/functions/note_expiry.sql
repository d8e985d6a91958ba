-- Records, as an 'expiry' link of the seal chain, that retention is about to drop or detach
-- a partition or chunk of audit.record_version: its time span, its row count, and the rows
-- of each sealed segment it holds, so that audit.verify() reports those rows as expired by
-- policy rather than missing. audit.maintain_partitions() and audit.apply_retention() call
-- it just before the drop, in the same transaction: if the drop fails, the link goes too.
-- Rows not sealed yet are counted (unsealed_rows): they go unsealed.
create or replace function audit.note_expiry(relation regclass)
returns bigint
language plpgsql
set search_path = pg_catalog, pg_temp
set TimeZone = 'UTC'
as $$
declare
    link bigint;
    facts record;
begin
    if not exists (
        select from pg_catalog.pg_inherits i
        where i.inhrelid = relation and i.inhparent = 'audit.record_version'::pg_catalog.regclass
    ) then
        raise exception using
            errcode = 'invalid_parameter_value',
            message = 'audit.note_expiry: ' || relation::text
                || ' is not a partition or chunk of audit.record_version';
    end if;
    link := audit.lock_seal_chain();
    -- The relation's name as regclass prints it (quoted, schema-qualified: the search_path
    -- is pg_catalog's), the one value put into the text.
    execute $q$
        with ranges as materialized (
            select pg_catalog.array_agg(pg_catalog.lower(g) order by pg_catalog.lower(g)) as los,
                pg_catalog.array_agg(pg_catalog.upper(g) order by pg_catalog.lower(g)) as his,
                pg_catalog.array_agg(s.segment_id order by pg_catalog.lower(g)) as owners
            from audit.seal_segment s, pg_catalog.unnest(s.ids) g
        ),
        placed as (
            select r.id, r.ts, k.owner
            from $q$ || relation::text || $q$ r
            cross join ranges m
            cross join lateral (
                select case when b.slot > 0 and r.id < m.his[b.slot] then m.owners[b.slot] end as owner
                from (select coalesce(pg_catalog.width_bucket(r.id, m.los), 0) as slot) b
            ) k
        ),
        per_segment as (
            select p.owner, pg_catalog.count(*) as n from placed p group by p.owner
        )
        select
            (select pg_catalog.count(*) from placed) as rows,
            (select min(p.ts) from placed p) as first_ts,
            (select max(p.ts) from placed p) as last_ts,
            (select coalesce(sum(ps.n), 0) from per_segment ps where ps.owner is null) as unsealed,
            (select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                'segment', ps.owner, 'rows', ps.n) order by ps.owner), '[]')
             from per_segment ps where ps.owner is not null) as segments
    $q$ into facts;
    perform audit.append_seal_link(link, 'expiry', pg_catalog.jsonb_build_object(
        'relation', relation::text,
        'rows', facts.rows,
        'first_ts', facts.first_ts,
        'last_ts', facts.last_ts,
        'unsealed_rows', facts.unsealed,
        'segments', facts.segments
    ));
    return link;
end
$$;

revoke all on function audit.note_expiry(regclass) from public;
