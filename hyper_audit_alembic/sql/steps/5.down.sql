-- Audit schema version 5 -> 4, keeping every recorded row and value.
--
-- Version 4 has no REDACT rows (its rules refuse them) and no seal chain: while any REDACT
-- row or any link of the chain exists, the downgrade refuses before changing anything, as
-- both are history (of erasures, and of what was sealed) that would be lost. Otherwise
-- version 4's rule comes back and the empty chain tables go. The label REDACT stays in
-- audit.operation (PostgreSQL cannot remove an enum label; no row uses it).
-- released/4.sql, run after this file, restores version 4's functions. The text holds no
-- '%' and no ':name'.

-- (version_guard.sql runs before this step: the installed version must be 5.)
do $$
declare
    links bigint := 0;
begin
    if exists (select from audit.record_version v where v.op::text = 'REDACT') then
        raise exception using
            errcode = 'object_not_in_prerequisite_state',
            message = 'audit schema downgrade to version 4: audit.record_version holds REDACT '
                || 'rows, which version 4 cannot keep',
            hint = 'Keep version 5: the REDACT rows are the record of lawful erasures.';
    end if;
    if pg_catalog.to_regclass('audit.seal_log') is not null then
        select pg_catalog.count(*) into links from audit.seal_log;
    end if;
    if links > 0 then
        raise exception using
            errcode = 'object_not_in_prerequisite_state',
            message = 'audit schema downgrade to version 4: audit.seal_log holds ' || links
                || ' links of the seal chain, which version 4 cannot keep or extend',
            hint = 'Keep version 5, or delete the chain yourself first (delete from '
                || 'audit.seal_salt; delete from audit.seal_segment; delete from audit.seal_log): '
                || 'the history is then no longer sealed.';
    end if;
end
$$;

alter table audit.record_version
    drop constraint if exists record_version_record_id_when_new,
    add constraint record_version_record_id_when_new
        check ((op in ('INSERT', 'UPDATE') or op::text = 'SNAPSHOT') = (record_id is not null));

-- The audit hypertable's retention job goes back to a TimescaleDB policy after this step
-- (retention_to_policy.sql, which sql.downgrade_statements() runs after it).

-- Functions version 5 added (released/4.sql restores version 4's own).
drop function if exists audit.note_expiry(regclass);
drop function if exists audit.redact(regclass, jsonb, text[], text);
drop function if exists audit.set_seal_mac(bigint, bytea);
drop function if exists audit.verify(bigint, bigint);
drop function if exists audit.seal();
drop function if exists audit.segment_state(bigint, bytea);
drop function if exists audit.append_seal_link(bigint, text, jsonb);
drop function if exists audit.lock_seal_chain();
drop function if exists audit.seal_link_text(bigint);
drop function if exists audit.canonical_row_sql(text);

drop table if exists audit.seal_salt;
drop table if exists audit.seal_segment;
drop table if exists audit.seal_log;

delete from audit.schema_version;

insert into audit.schema_version (version) values (4);
