-- Seals every committed audit row that no seal covers yet: hashes them into segments and
-- appends a 'seal' link to the chain. Run it on a schedule, like maintain_partitions
-- (select * from audit.seal()), or with the CLI's seal command. Returns the new link, or
-- no row when there was nothing to seal. Nothing here runs on the write path.
--
-- Which rows: the rows this statement's snapshot sees and no earlier seal covered. A
-- transaction still running now has rows this seal cannot see; they may hold ids below
-- those sealed now. So the link keeps (in its body, hashed with it):
--   max_id   the highest id sealed so far;
--   pending  the ids of the transactions running at the snapshot (and this one's, if it
--            wrote audit rows): the next seal looks their rows up by transaction id
--            (record_version_transaction_id), whatever their ids and times;
--   read_at, running  when the seal read the running transactions (pg_locks: every
--            transaction's virtual id, whether or not it has written) and, for each, a
--            time its transaction began after. Every row the next seal must find has
--            id > max_id and ts >= the earliest of these (ts is its transaction's start),
--            so the next seal reads only the partitions or chunks from then on.
-- A row is sealed once: by id above max_id, or by a pending transaction id, never both
-- (a pending transaction's rows were not visible to the seal that named it).
--
-- Canonical row text (docs/compliance.md): (to_jsonb(row) - 'table_oid')::text in UTC;
-- each segment's hash is sha256(salt || sha256(row text) || ... in id order).
create or replace function audit.seal()
returns table (link_id bigint, rows_sealed bigint, segments integer, chain_hash bytea)
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
set TimeZone = 'UTC'
set jit = off
set work_mem = '64MB'
as $$
declare
    link bigint;
    previous jsonb;
    max_id bigint := 0;
    pending xid8[] := '{}';
    scan_from timestamptz := '-infinity';
    bounds jsonb := '{}';
    read_at timestamptz;
    running jsonb;
    me xid8 := pg_catalog.pg_current_xact_id_if_assigned();
    first_segment bigint;
    sealed bigint;
    made integer;
    highest bigint;
    now_pending xid8[];
    chained bytea;
begin
    link := audit.lock_seal_chain();
    select l.body into previous
    from audit.seal_log l where l.kind = 'seal' order by l.link_id desc limit 1;
    if previous is not null then
        max_id := (previous ->> 'max_id')::bigint;
        pending := array(select pg_catalog.jsonb_array_elements_text(previous -> 'pending'))::xid8[];
        bounds := previous -> 'running';
        scan_from := least(
            (previous ->> 'read_at')::timestamptz,
            (select min(b.value::timestamptz) from pg_catalog.jsonb_each_text(bounds) b)
        );
    end if;

    -- The transactions running now, read before the snapshot of the seal's statement.
    read_at := pg_catalog.clock_timestamp();
    select coalesce(pg_catalog.jsonb_object_agg(v.vxid, coalesce(
            bounds ->> v.vxid,
            coalesce(previous ->> 'read_at', '-infinity')
        )), '{}')
    into running
    from (
        select distinct lk.virtualxid::text as vxid
        from pg_catalog.pg_locks lk
        where lk.locktype = 'virtualxid' and lk.granted and lk.virtualxid is not null
    ) v;

    select coalesce(max(s.segment_id), 0) into first_segment from audit.seal_segment s;

    with candidates as materialized (
        select r.id, r.ts, r.tableoid as rel,
            pg_catalog.sha256(pg_catalog.convert_to(
                (pg_catalog.to_jsonb(r) - 'table_oid')::text, 'UTF8')) as leaf
        from audit.record_version r
        where r.ts >= scan_from and r.id > max_id
            and r.transaction_id is distinct from me
        union all
        select r.id, r.ts, r.tableoid,
            pg_catalog.sha256(pg_catalog.convert_to(
                (pg_catalog.to_jsonb(r) - 'table_oid')::text, 'UTF8'))
        from audit.record_version r
        where r.transaction_id = any (pending)
            and not (r.ts >= scan_from and r.id > max_id)
            and r.transaction_id is distinct from me
    ),
    blocks as materialized (
        select b.rel, b.block,
            first_segment + pg_catalog.row_number() over (order by b.first_id, b.rel) as segment_id,
            pg_catalog.uuid_send(pg_catalog.gen_random_uuid())
                || pg_catalog.uuid_send(pg_catalog.gen_random_uuid()) as salt
        from (
            select c.rel, c.id / 100000 as block, min(c.id) as first_id
            from candidates c group by c.rel, c.id / 100000
        ) b
    ),
    islands as (
        select i.rel, i.block,
            pg_catalog.array_agg(pg_catalog.int8range(i.lo, i.hi, '[]') order by i.lo) as ids
        from (
            select g.rel, g.block, min(g.id) as lo, max(g.id) as hi
            from (
                select c.rel, c.id / 100000 as block, c.id,
                    c.id - pg_catalog.row_number() over (
                        partition by c.rel, c.id / 100000 order by c.id) as island
                from candidates c
            ) g
            group by g.rel, g.block, g.island
        ) i
        group by i.rel, i.block
    ),
    hashed as materialized (
        select b.segment_id, b.salt, i.ids, pg_catalog.count(*) as row_count,
            min(c.ts) as first_ts, max(c.ts) as last_ts, max(c.id) as last_id,
            pg_catalog.sha256(b.salt || pg_catalog.string_agg(c.leaf, ''::bytea order by c.id, c.leaf)) as hash
        from candidates c
        join blocks b on b.rel = c.rel and b.block = c.id / 100000
        join islands i on i.rel = c.rel and i.block = c.id / 100000
        group by b.segment_id, b.salt, i.ids
    ),
    new_segments as (
        insert into audit.seal_segment (segment_id, link_id, ids, row_count, first_ts, last_ts, hash)
        select h.segment_id, link, h.ids, h.row_count, h.first_ts, h.last_ts, h.hash from hashed h
    ),
    new_salts as (
        insert into audit.seal_salt (segment_id, salt)
        select h.segment_id, h.salt from hashed h
    )
    select
        (select coalesce(sum(h.row_count), 0) from hashed h),
        (select pg_catalog.count(*) from hashed h),
        (select max(h.last_id) from hashed h),
        array(
            select x from pg_catalog.pg_snapshot_xip(pg_catalog.pg_current_snapshot()) x
            union
            select me where me is not null
        )
    into sealed, made, highest, now_pending;

    if made = 0 then
        return;
    end if;

    chained := audit.append_seal_link(link, 'seal', pg_catalog.jsonb_build_object(
        'canonical', 1,
        'rows', sealed,
        'max_id', greatest(max_id, highest),
        'pending', (select coalesce(pg_catalog.jsonb_agg(p::text order by p), '[]')
                    from pg_catalog.unnest(now_pending) p),
        'read_at', read_at,
        'running', running
    ));
    return query select link, sealed, made, chained;
end
$$;

revoke all on function audit.seal() from public;
