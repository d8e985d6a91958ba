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
-- (a pending transaction's rows were not visible to the seal that named it). A row without
-- a transaction id (written by the reference design before an adoption) is sealed like any
-- other; only this transaction's own rows (me, when it has written) wait.
--
-- Canonical row text (docs/compliance.md, audit.canonical_row_sql): a JSON array of the
-- columns; each segment's hash is sha256(salt || sha256(sha256(row text) || ... in id order)).
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
    sealed_segments jsonb;
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

    -- The rows to seal, hashed and grouped in one read-only statement (PostgreSQL may hash
    -- them in parallel workers: the subquery sorts them by segment after their hash is
    -- made), with the transactions running at its snapshot: the same snapshot chose them.
    -- A segment: the rows of one partition or chunk (tableoid) and one block of 100,000
    -- ids; its ids are listed as ranges of consecutive ids (islands).
    execute pg_catalog.replace($seal$
    select
        coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
            'ids', b.ids::text, 'rows', b.n, 'first_ts', b.first_ts, 'last_ts', b.last_ts,
            'last_id', b.last_id, 'inner', pg_catalog.encode(b.inner_hash, 'hex')
        ) order by b.first_id, b.rel), '[]'::jsonb),
        array(
            select x from pg_catalog.pg_snapshot_xip(pg_catalog.pg_current_snapshot()) x
            union
            select $3 where $3 is not null
        )
    from (
        select i.rel, i.block,
            pg_catalog.array_agg(pg_catalog.int8range(i.lo, i.hi, '[]') order by i.lo) as ids,
            sum(i.n)::bigint as n, min(i.first_ts) as first_ts, max(i.last_ts) as last_ts,
            min(i.lo) as first_id, max(i.hi) as last_id,
            pg_catalog.sha256(pg_catalog.string_agg(i.leaves, ''::bytea order by i.lo, i.leaves)) as inner_hash
        from (
            select g.rel, g.block, g.island, min(g.id) as lo, max(g.id) as hi,
                pg_catalog.count(*) as n, min(g.ts) as first_ts, max(g.ts) as last_ts,
                pg_catalog.string_agg(g.leaf, ''::bytea order by g.id, g.leaf) as leaves
            from (
                select c.rel, c.block, c.id, c.ts, c.leaf,
                    c.id - pg_catalog.row_number() over (
                        partition by c.rel, c.block order by c.id) as island
                from (
                    select r.tableoid as rel, r.id / 100000 as block, r.id, r.ts,
                        pg_catalog.sha256(pg_catalog.convert_to((CANONICAL_ROW)::text, 'UTF8')) as leaf
                    from audit.record_version r
                    where r.ts >= $1 and r.id > $2 and coalesce(r.transaction_id <> $3, true)
                    union all
                    select r.tableoid, r.id / 100000, r.id, r.ts,
                        pg_catalog.sha256(pg_catalog.convert_to((CANONICAL_ROW)::text, 'UTF8'))
                    from audit.record_version r
                    where r.transaction_id = any ($4)
                        and not (r.ts >= $1 and r.id > $2)
                        and coalesce(r.transaction_id <> $3, true)
                    order by 1, 2, 3
                ) c
            ) g
            group by g.rel, g.block, g.island
        ) i
        group by i.rel, i.block
    ) b
    $seal$, 'CANONICAL_ROW', audit.canonical_row_sql('r'))
    into sealed_segments, now_pending
    using scan_from, max_id, me, pending;

    -- Each segment's hash: sha256(a new random salt || the hash of its rows' hashes).
    with segments as materialized (
        select first_segment + e.ordinality as segment_id, e.value as facts,
            pg_catalog.uuid_send(pg_catalog.gen_random_uuid())
                || pg_catalog.uuid_send(pg_catalog.gen_random_uuid()) as salt
        from pg_catalog.jsonb_array_elements(sealed_segments) with ordinality as e
    ),
    new_segments as (
        insert into audit.seal_segment (segment_id, link_id, ids, row_count, first_ts, last_ts, hash)
        select s.segment_id, link, (s.facts ->> 'ids')::int8range[], (s.facts ->> 'rows')::bigint,
            (s.facts ->> 'first_ts')::timestamptz, (s.facts ->> 'last_ts')::timestamptz,
            pg_catalog.sha256(s.salt || pg_catalog.decode(s.facts ->> 'inner', 'hex'))
        from segments s
    )
    insert into audit.seal_salt (segment_id, salt)
    select s.segment_id, s.salt from segments s;

    select coalesce(sum((e.value ->> 'rows')::bigint), 0), pg_catalog.count(*),
        max((e.value ->> 'last_id')::bigint)
    into sealed, made, highest
    from pg_catalog.jsonb_array_elements(sealed_segments) e;

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
