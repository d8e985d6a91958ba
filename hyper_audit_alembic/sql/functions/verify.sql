-- Recomputes the seal chain from link from_link to link to_link (default: all of it) and
-- says, link by link, whether it holds: 'ok', 'redacted' (a redaction link changed some of
-- its rows, as recorded), 'expired' (retention dropped its rows, as recorded: an 'expiry'
-- link), or 'failed' and why (rows changed, missing or added; a link edited or missing; a
-- redaction that does not follow its segment's previous hash). chain_hash is the
-- recomputed hash of each link: a client holding the key of keyed seals checks their mac
-- against it. When the check runs to the end, a last row (link_id null, kind 'unsealed')
-- counts the rows no seal covers yet, and fails for rows that a seal should have covered
-- (an id at or below the last seal's max_id whose transaction was not running then: added).
--
-- Every row of the sealed segments is read once and hashed as audit.seal() did; verify
-- takes no lock that writers wait for.
create or replace function audit.verify(from_link bigint default null, to_link bigint default null)
returns table (
    link_id bigint, kind text, status text, rows_verified bigint, chain_hash bytea, detail text
)
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
set TimeZone = 'UTC'
set jit = off
set work_mem = '64MB'
as $$
declare
    first_link bigint := coalesce(from_link, 1);
    last_link bigint;
    previous bytea;
    found_segments jsonb;
    final_hash jsonb := '{}';
    current_hash jsonb := '{}';
    expired jsonb := '{}';
    pending text[];
    max_sealed bigint;
    waiting bigint;
    added bigint;
    first_added bigint;
    next_from timestamptz;
    los bigint[];
    his bigint[];
    owners bigint[];
    checked boolean[];
    low bigint;
    high bigint;
    l record;
    seg record;
    expected_link bigint;
    after_gap boolean;
    link_text bytea;
    stored_previous bytea;
    recomputed bytea;
    verdict text;
    why text;
    counted bigint;
    found jsonb;
    want text;
    changed jsonb;
    last_seal jsonb := '{}';
begin
    select max(x.link_id) into last_link from audit.seal_log x;
    last_link := least(coalesce(to_link, last_link), last_link);
    if first_link < 1 then
        raise exception using
            errcode = 'invalid_parameter_value',
            message = 'audit.verify: from_link must be 1 or more, not ' || first_link;
    end if;
    if first_link > 1 then
        select x.chain_hash into previous from audit.seal_log x where x.link_id = first_link - 1;
        if previous is null then
            raise exception using
                errcode = 'invalid_parameter_value',
                message = 'audit.verify: there is no link ' || (first_link - 1)
                    || ' to start the chain from',
                hint = 'Start at link 1, or at a link after one that exists.';
        end if;
    else
        previous := pg_catalog.decode(pg_catalog.repeat('00', 32), 'hex');
    end if;

    -- The hash each segment must have now: as sealed, or as the last redaction of it left it.
    select coalesce(pg_catalog.jsonb_object_agg(x.segment, x.new_hash), '{}') into final_hash
    from (
        select distinct on (e.value ->> 'segment') e.value ->> 'segment' as segment,
            e.value ->> 'new_hash' as new_hash
        from audit.seal_log r, pg_catalog.jsonb_array_elements(r.body -> 'segments') e
        where r.kind = 'redaction'
        order by e.value ->> 'segment', r.link_id desc
    ) x;
    -- The rows of each segment that retention removed, as recorded.
    select coalesce(pg_catalog.jsonb_object_agg(x.segment, x.rows), '{}') into expired
    from (
        select e.value ->> 'segment' as segment, sum((e.value ->> 'rows')::bigint) as rows
        from audit.seal_log r, pg_catalog.jsonb_array_elements(r.body -> 'segments') e
        where r.kind = 'expiry'
        group by e.value ->> 'segment'
    ) x;

    select coalesce(x.body, '{}') into last_seal
    from audit.seal_log x where x.kind = 'seal' order by x.link_id desc limit 1;
    pending := array(select pg_catalog.jsonb_array_elements_text(last_seal -> 'pending'));
    max_sealed := coalesce((last_seal ->> 'max_id')::bigint, 0);
    -- Where the next seal will look for rows above max_sealed (as audit.seal() computes it):
    -- a row above it that begins before is one no seal will ever take: added.
    next_from := least(
        coalesce((last_seal ->> 'read_at')::timestamptz, '-infinity'),
        (select min(b.value::timestamptz) from pg_catalog.jsonb_each_text(last_seal -> 'running') b)
    );

    -- Every segment's id ranges, in order, for a binary search (width_bucket) per row.
    select pg_catalog.array_agg(pg_catalog.lower(g) order by pg_catalog.lower(g)),
        pg_catalog.array_agg(pg_catalog.upper(g) order by pg_catalog.lower(g)),
        pg_catalog.array_agg(s.segment_id order by pg_catalog.lower(g)),
        pg_catalog.array_agg(s.link_id between first_link and last_link order by pg_catalog.lower(g)),
        min(pg_catalog.lower(g)) filter (where s.link_id between first_link and last_link),
        max(pg_catalog.upper(g)) filter (where s.link_id between first_link and last_link)
    into los, his, owners, checked, low, high
    from audit.seal_segment s, pg_catalog.unnest(s.ids) g
    -- Segments of links after the last one (deleted from the end of the log: reported
    -- below) seal nothing: their rows read as not sealed yet.
    where s.link_id <= last_link;

    -- One pass over the rows: each row of a checked segment is hashed as audit.seal() did and
    -- counted with its segment; a row in no segment is not sealed yet, or was added where a
    -- seal covered the ids. When the check stops before the last link, only the ids of its
    -- segments are read. The arrays come as parameters (no CTE) and the rows are sorted by
    -- segment in a subquery: so PostgreSQL hashes the rows in parallel workers, before the
    -- sort, which then moves 80 bytes a row. (width_bucket of 0, an id below every range,
    -- makes a null array element: no segment.)
    execute pg_catalog.replace($verify$
    with per_segment as (
        select p.owner, pg_catalog.count(*) as n,
            pg_catalog.sha256(pg_catalog.string_agg(p.leaf, ''::bytea order by p.id, p.leaf)) as inner_hash,
            pg_catalog.count(*) filter (
                where (p.id > $4 and p.ts >= $12) or p.transaction_id::text = any ($5)) as waiting,
            min(p.id) filter (
                where not ((p.id > $4 and p.ts >= $12)
                    or coalesce(p.transaction_id::text = any ($5), false))) as first_added
        from (
            select r.id, r.ts, r.transaction_id,
                case when r.id < $7[pg_catalog.width_bucket(r.id, $6)]
                    then $8[pg_catalog.width_bucket(r.id, $6)] end as owner,
                coalesce(r.id < $7[pg_catalog.width_bucket(r.id, $6)]
                    and $9[pg_catalog.width_bucket(r.id, $6)], false) as checked,
                case when r.id < $7[pg_catalog.width_bucket(r.id, $6)]
                    and $9[pg_catalog.width_bucket(r.id, $6)]
                then pg_catalog.sha256(pg_catalog.convert_to((CANONICAL_ROW)::text, 'UTF8')) end as leaf
            from audit.record_version r
            where $3 is null or (r.id >= $10 and r.id < $11)
            order by 4, 1
        ) p
        where p.owner is null or p.checked
        group by p.owner
    )
    select
        coalesce(pg_catalog.jsonb_object_agg(ps.owner, pg_catalog.jsonb_build_array(
            ps.n, pg_catalog.encode(pg_catalog.sha256(coalesce(st.salt, ''::bytea) || ps.inner_hash), 'hex')
        )) filter (where ps.owner is not null), '{}'),
        coalesce(sum(ps.waiting) filter (where ps.owner is null), 0),
        coalesce(sum(ps.n - ps.waiting) filter (where ps.owner is null), 0),
        min(ps.first_added) filter (where ps.owner is null)
    from per_segment ps left join audit.seal_salt st on st.segment_id = ps.owner
    $verify$, 'CANONICAL_ROW', audit.canonical_row_sql('r'))
    into found_segments, waiting, added, first_added
    using first_link, last_link, to_link, max_sealed, pending, los, his, owners, checked, low,
        high, next_from;

    expected_link := first_link;
    stored_previous := previous;
    for l in
        select x.link_id, x.kind, x.body, x.chain_hash
        from audit.seal_log x
        where x.link_id between first_link and last_link
        order by x.link_id
    loop
        after_gap := l.link_id <> expected_link;
        if after_gap then
            return query select g, null::text, 'failed', 0::bigint, null::bytea,
                'link ' || g || ' is missing from the seal log'
            from pg_catalog.generate_series(expected_link, l.link_id - 1) g;
            expected_link := l.link_id;
        end if;
        expected_link := expected_link + 1;
        link_text := pg_catalog.convert_to(audit.seal_link_text(l.link_id), 'UTF8');
        recomputed := pg_catalog.sha256(previous || link_text);
        -- After a broken link (reported as such), a link that follows either its recomputed
        -- hash or its stored one is not broken too: a link whose content was edited keeps
        -- its stored hash, which the next link was made from; a stored hash edited leaves
        -- the content's. So a broken link fails alone; the links nobody touched stay 'ok'.
        if recomputed <> l.chain_hash and stored_previous <> previous
            and pg_catalog.sha256(stored_previous || link_text) = l.chain_hash
        then
            recomputed := l.chain_hash;
        end if;
        previous := recomputed;
        stored_previous := l.chain_hash;
        verdict := 'ok';
        why := null;
        counted := 0;
        if recomputed <> l.chain_hash then
            verdict := 'failed';
            why := case when after_gap
                then 'link ' || l.link_id || ' cannot be checked: the link before it is missing'
                else 'link ' || l.link_id || ' was edited: its stored chain hash is not the hash '
                    || 'of its content and the previous link''s' end;
        end if;

        if l.kind = 'seal' then
            for seg in
                select x.segment_id, x.ids, x.row_count, x.hash
                from audit.seal_segment x where x.link_id = l.link_id order by x.segment_id
            loop
                found := found_segments -> seg.segment_id::text;
                want := coalesce(final_hash ->> seg.segment_id::text, pg_catalog.encode(seg.hash, 'hex'));
                current_hash := current_hash
                    || pg_catalog.jsonb_build_object(seg.segment_id::text, pg_catalog.encode(seg.hash, 'hex'));
                if found is not null and (found ->> 0)::bigint = seg.row_count and found ->> 1 = want then
                    counted := counted + seg.row_count;
                    if final_hash ? seg.segment_id::text and verdict = 'ok' then
                        verdict := 'redacted';
                        why := coalesce(why || '; ', '') || 'segment ' || seg.segment_id
                            || ' redacted (see the redaction links)';
                    end if;
                elsif expired ? seg.segment_id::text
                    and coalesce((found ->> 0)::bigint, 0) + (expired ->> seg.segment_id::text)::bigint
                        = seg.row_count then
                    -- The rows left cannot be checked (the hash covers the whole segment):
                    -- not counted as verified.
                    if verdict <> 'failed' then
                        verdict := 'expired';
                        why := coalesce(why || '; ', '') || 'segment ' || seg.segment_id || ': '
                            || (expired ->> seg.segment_id::text) || ' rows removed by retention'
                            || case when found is null then ''
                                else ', ' || (found ->> 0) || ' rows left unverifiable' end;
                    end if;
                elsif verdict <> 'failed' then
                    verdict := 'failed';
                    why := 'segment ' || seg.segment_id || ' (ids ' || seg.ids::text || '): '
                        || case
                            when coalesce((found ->> 0)::bigint, 0) < seg.row_count then
                                (seg.row_count - coalesce((found ->> 0)::bigint, 0))
                                || ' rows missing (sealed ' || seg.row_count || ', found '
                                || coalesce((found ->> 0)::bigint, 0) || ')'
                            when (found ->> 0)::bigint > seg.row_count then
                                ((found ->> 0)::bigint - seg.row_count) || ' rows added (sealed '
                                || seg.row_count || ', found ' || (found ->> 0) || ')'
                            else 'rows changed (' || seg.row_count || ' rows, the hash differs)'
                        end;
                end if;
            end loop;
        elsif l.kind = 'redaction' then
            for changed in select e.value from pg_catalog.jsonb_array_elements(l.body -> 'segments') e loop
                if current_hash ? (changed ->> 'segment')
                    and current_hash ->> (changed ->> 'segment') <> changed ->> 'old_hash'
                    and verdict <> 'failed'
                then
                    verdict := 'failed';
                    why := 'redaction link ' || l.link_id || ' does not follow segment '
                        || (changed ->> 'segment') || '''s previous hash';
                end if;
                current_hash := current_hash
                    || pg_catalog.jsonb_build_object(changed ->> 'segment', changed ->> 'new_hash');
            end loop;
            counted := coalesce((l.body ->> 'rows')::bigint, 0);
            if verdict = 'ok' then
                verdict := 'redacted';
                why := (l.body ->> 'rows') || ' rows of ' || (l.body ->> 'table') || ' redacted ('
                    || coalesce((select pg_catalog.string_agg(c, ', ')
                        from pg_catalog.jsonb_array_elements_text(nullif(l.body -> 'columns', 'null'::jsonb)) c), 'the whole row')
                    || ')' || coalesce(': ' || (l.body ->> 'reason'), '');
            end if;
        elsif l.kind = 'expiry' then
            counted := 0;
            if verdict = 'ok' then
                verdict := 'expired';
                why := (l.body ->> 'rows') || ' rows of ' || (l.body ->> 'relation')
                    || ' (' || (l.body ->> 'first_ts') || ' to ' || (l.body ->> 'last_ts')
                    || ') removed by retention';
            end if;
        end if;
        return query select l.link_id, l.kind, verdict, counted, recomputed, why;
    end loop;

    -- Rows no seal covers: not sealed yet (their transaction ran at the last seal, or they
    -- came after it), or added where a seal should have covered them. Segments of links
    -- after the last one: those links were deleted from the end of the log.
    if to_link is null then
        return query select s.link_id, null::text, 'failed'::text, 0::bigint, null::bytea,
            'link ' || s.link_id || ' is missing from the seal log (its segments remain)'
        from audit.seal_segment s
        where s.link_id > coalesce(last_link, 0)
        group by s.link_id
        order by s.link_id;
        if added > 0 then
            return query select null::bigint, 'unsealed'::text, 'failed'::text, added,
                null::bytea, added || case when added = 1 then ' row' else ' rows' end
                    || ' in no seal that a seal should have covered '
                    || '(added; the first has id ' || first_added || ')';
        else
            return query select null::bigint, 'unsealed'::text, 'ok'::text, waiting,
                null::bytea, waiting || case when waiting = 1 then ' row' else ' rows' end
                    || ' not sealed yet';
        end if;
    end if;
end
$$;

revoke all on function audit.verify(bigint, bigint) from public;
