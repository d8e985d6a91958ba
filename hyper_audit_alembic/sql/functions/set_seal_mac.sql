-- Stores the mac of a seal made with a key (HMAC-SHA256(key, chain_hash), computed by the
-- client: the database never sees the key). Only once per link: a mac is never replaced.
create or replace function audit.set_seal_mac(link bigint, mac bytea)
returns void
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    if pg_catalog.length(mac) <> 32 then
        raise exception using
            errcode = 'invalid_parameter_value',
            message = 'audit.set_seal_mac: a mac is 32 bytes (HMAC-SHA256), not '
                || coalesce(pg_catalog.length(mac)::text, 'null');
    end if;
    update audit.seal_log l set mac = set_seal_mac.mac
    where l.link_id = link and l.kind = 'seal' and l.mac is null;
    if not found then
        raise exception using
            errcode = 'invalid_parameter_value',
            message = 'audit.set_seal_mac: link ' || link || ' is not a seal without a mac';
    end if;
end
$$;

revoke all on function audit.set_seal_mac(bigint, bytea) from public;
