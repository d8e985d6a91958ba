-- Appends a link to the seal chain and returns its chain hash: sha256(the previous link's
-- chain hash, or 32 zero bytes for the first link || the link's text). The caller holds
-- the chain's lock (audit.lock_seal_chain) and has written the link's segments.
create or replace function audit.append_seal_link(link bigint, link_kind text, link_body jsonb)
returns bytea
language plpgsql
set search_path = pg_catalog, pg_temp
set TimeZone = 'UTC'
as $$
declare
    previous bytea;
    chained bytea;
begin
    select l.chain_hash into previous from audit.seal_log l where l.link_id = link - 1;
    if previous is null and link > 1 then
        raise exception using
            errcode = 'data_corrupted',
            message = 'audit seal chain: link ' || (link - 1) || ' is missing; run audit.verify()';
    end if;
    insert into audit.seal_log (link_id, kind, made_at, made_by, body, chain_hash)
    values (
        link, link_kind, pg_catalog.now(),
        coalesce(
            nullif(pg_catalog.current_setting('hyper_audit.actor', true), ''),
            nullif(pg_catalog.current_setting('role'), 'none'),
            session_user::text
        ),
        link_body, ''::bytea
    );
    chained := pg_catalog.sha256(
        coalesce(previous, pg_catalog.decode(pg_catalog.repeat('00', 32), 'hex'))
        || pg_catalog.convert_to(audit.seal_link_text(link), 'UTF8')
    );
    update audit.seal_log set chain_hash = chained where link_id = link;
    return chained;
end
$$;

revoke all on function audit.append_seal_link(bigint, text, jsonb) from public;
