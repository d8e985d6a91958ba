-- Serialises every writer of the chain (seal, redact, note_expiry): one link at a time, in
-- order. Readers (verify) are not blocked.
create or replace function audit.lock_seal_chain()
returns bigint
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
    lock table audit.seal_log in exclusive mode;
    return coalesce((select max(l.link_id) from audit.seal_log l), 0) + 1;
end
$$;

revoke all on function audit.lock_seal_chain() from public;
