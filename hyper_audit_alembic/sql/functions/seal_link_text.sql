-- The text a link of the seal chain is hashed as: the jsonb text of
--   {"link": id, "kind": ..., "made_at": ..., "made_by": ..., "body": {...},
--    "segments": [{"segment": id, "ids": "{...}", "rows": n, "first_ts": ..., "last_ts": ...,
--                  "hash": "<hex>"}, ...]}
-- (segments in segment id order; an empty list for a redaction or an expiry link), with
-- timestamps in UTC. jsonb renders keys in a fixed order and numbers exactly, so the text
-- is the same on every server and after a dump and restore. docs/compliance.md defines it
-- for auditors who re-verify with their own tools.
create or replace function audit.seal_link_text(link bigint)
returns text
language sql
stable
set search_path = pg_catalog, pg_temp
set TimeZone = 'UTC'
as $$
    select pg_catalog.jsonb_build_object(
        'link', l.link_id,
        'kind', l.kind,
        'made_at', l.made_at,
        'made_by', l.made_by,
        'body', l.body,
        'segments', coalesce((
            select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                'segment', s.segment_id,
                'ids', s.ids::text,
                'rows', s.row_count,
                'first_ts', s.first_ts,
                'last_ts', s.last_ts,
                'hash', pg_catalog.encode(s.hash, 'hex')
            ) order by s.segment_id)
            from audit.seal_segment s
            where s.link_id = l.link_id
        ), '[]'::jsonb)
    )::text
    from audit.seal_log l
    where l.link_id = link
$$;

revoke all on function audit.seal_link_text(bigint) from public;
