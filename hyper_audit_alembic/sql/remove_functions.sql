-- Stops tracking every table and removes the audit functions; the recorded history
-- (audit.record_version and its type) stays.
do $$
declare
    tracked regclass;
begin
    if to_regprocedure('audit.disable_tracking(regclass)') is not null then
        for tracked in
            select distinct t.tgrelid::regclass
            from pg_catalog.pg_trigger t
            where t.tgfoid in (
                to_regprocedure('audit.record_row_change()'),
                to_regprocedure('audit.record_key_change()'),
                to_regprocedure('audit.record_truncate()'),
                to_regprocedure('audit.citus_row_change()')
            )
        loop
            perform audit.disable_tracking(tracked);
        end loop;
    end if;
end
$$;

-- Version 4: the time machine's functions, and the state that only tracking keeps true
-- (completeness marks, snapshots in progress, the column names last seen). Recorded
-- column changes stay with the history (the table goes when it holds none). A rename
-- made while the audit trail is not installed is not seen, like any change then.
drop procedure if exists audit.snapshot(regclass, integer);

drop function if exists audit.snapshot_batch(regclass, integer);

drop function if exists audit.table_as_of(regclass, timestamptz);

drop function if exists audit.table_before(regclass, bigint);

drop function if exists audit.rebuilt_table(regclass, timestamptz, bigint);

drop function if exists audit.current_names(oid, jsonb, bigint);

drop function if exists audit.note_trail_start(regclass);

drop function if exists audit.record_column_changes(regclass);

drop function if exists audit.last_audit_id();

drop function if exists audit.records_every_change(regclass);

-- (retention_to_policy.sql ran before: audit.apply_retention is gone.)

-- Version 5: the seal chain's functions. The chain itself (seal_log, seal_segment,
-- seal_salt) stays with the history it seals; its tables go when it has no link.
drop function if exists audit.note_expiry(regclass);

drop function if exists audit.redact(regclass, jsonb, text[], text);

drop function if exists audit.set_seal_mac(bigint, bytea);

drop function if exists audit.verify(bigint, bigint);

drop function if exists audit.seal();

drop function if exists audit.segment_state(bigint, bytea);

drop function if exists audit.lock_seal_chain();

drop function if exists audit.append_seal_link(bigint, text, jsonb);

drop function if exists audit.seal_link_text(bigint);

drop function if exists audit.canonical_row_sql(text);

do $$
begin
    if pg_catalog.to_regclass('audit.seal_log') is not null
        and not exists (select from audit.seal_log)
        and not exists (select from audit.seal_segment)
    then
        drop table audit.seal_salt;
        drop table audit.seal_segment;
        drop table audit.seal_log;
    end if;
end
$$;

drop table if exists audit.trail_complete_since;

drop table if exists audit.snapshot_progress;

drop table if exists audit.tracked_column;

do $$
begin
    if pg_catalog.to_regclass('audit.column_change') is not null
        and not exists (select from audit.column_change)
    then
        drop table audit.column_change;
    end if;
end
$$;

drop event trigger if exists audit_follow_primary_key_changes;

drop function if exists audit.follow_primary_key_changes();

drop event trigger if exists audit_refuse_unsafe_json_casts;

drop function if exists audit.refuse_unsafe_json_casts();

drop function if exists audit.enable_tracking(regclass);

drop function if exists audit.enable_tracking(regclass, text[], boolean);

drop function if exists audit.enable_tracking(regclass, text[], boolean, boolean);

drop function if exists audit.enable_tracking_keys(regclass);

drop function if exists audit.enable_tracking_keys(regclass, text[]);

drop function if exists audit.refuse_squatted_trigger_names(regclass, text[]);

drop function if exists audit.tracking_trigger_sql(regclass, text, text[]);

drop function if exists audit.set_tracking_options(regclass, text[]);

drop function if exists audit.tracking_options(regclass);

drop function if exists audit.trigger_argument_list(bytea);

drop function if exists audit.disable_tracking(regclass);

drop function if exists audit.drop_tracking_triggers(regclass);

drop function if exists audit.key_change_function(text[], boolean);

-- The key-change conditions enable_tracking made, one per set of key column names.
do $$
declare
    condition regprocedure;
begin
    for condition in
        select p.oid::regprocedure from pg_catalog.pg_proc p
        where p.pronamespace = 'audit'::regnamespace
            and pg_catalog.left(p.proname, 12) = 'key_changed_'
    loop
        execute 'drop function ' || condition::text;
    end loop;
end
$$;

drop function if exists audit.record_row_change();

drop function if exists audit.record_key_change();

drop function if exists audit.record_truncate();

drop function if exists audit.citus_row_change();

drop function if exists audit.citus_kind(regclass);

drop function if exists audit.is_tracking_function(oid);

drop function if exists audit.trigger_arguments(text[]);

drop function if exists audit.to_record_id(oid, text[], jsonb);

drop function if exists audit.record_id_text(oid, text[], jsonb);

drop function if exists audit.record_id_text_any(oid, text[], jsonb);

drop function if exists audit.primary_key_columns(oid);

drop function if exists audit.uuid_v5(uuid, text);

-- The key-change hand-off of the trigger functions (version 3; empty between statements).
drop table if exists audit.key_change_state;

drop table if exists audit.schema_version;
