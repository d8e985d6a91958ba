-- Snapshots a large table outside a migration, one transaction per batch:
--     call audit.snapshot('public.account', batch_size => 10000);
-- Each batch (audit.snapshot_batch) commits with its progress, so an interrupted call is
-- resumed by calling it again, and writes no row twice; writers wait only for the batch
-- being written. CALL it outside a transaction block (psql's autocommit): inside one,
-- PostgreSQL refuses the COMMIT (2D000); there, or in a migration, run
-- select audit.snapshot_batch('public.account', null) instead.
--
-- A procedure that commits can have neither SECURITY DEFINER nor SET clauses, so it runs
-- as its caller and names everything with its schema (a look-alike in the caller's
-- search_path is never called); the work and the checks are snapshot_batch's. Its
-- caller needs EXECUTE on both (revoked from public).
create or replace procedure audit.snapshot(target regclass, batch_size integer default 10000)
language plpgsql
as $$
declare
    step record;
begin
    loop
        select * into step from audit.snapshot_batch(target, batch_size);
        commit;
        exit when step.complete;
    end loop;
end
$$;

revoke all on procedure audit.snapshot(regclass, integer) from public;
