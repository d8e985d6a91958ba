-- The rows of one sealed segment as they are now: how many, and their hash under a salt
-- (sha256(salt || sha256(sha256(canonical row text) || ... in id order)), as audit.seal()
-- made it).
-- audit.redact() checks a segment with it before changing its rows and rehashes it after.
create or replace function audit.segment_state(segment bigint, salt bytea)
returns table (row_count bigint, hash bytea)
language plpgsql
stable
set search_path = pg_catalog, pg_temp
set TimeZone = 'UTC'
as $$
begin
    return query execute pg_catalog.replace($state$
        select pg_catalog.count(*),
            pg_catalog.sha256($2 || pg_catalog.sha256(coalesce(
                pg_catalog.string_agg(x.leaf, ''::bytea order by x.id, x.leaf), ''::bytea)))
        from (
            select r.id, pg_catalog.sha256(pg_catalog.convert_to((CANONICAL_ROW)::text, 'UTF8')) as leaf
            from audit.seal_segment s
            cross join pg_catalog.unnest(s.ids) g
            join audit.record_version r
                on r.id >= pg_catalog.lower(g) and r.id < pg_catalog.upper(g)
                and r.ts >= s.first_ts and r.ts <= s.last_ts
            where s.segment_id = $1
        ) x
    $state$, 'CANONICAL_ROW', audit.canonical_row_sql('r'))
    using segment, salt;
end
$$;

revoke all on function audit.segment_state(bigint, bytea) from public;
