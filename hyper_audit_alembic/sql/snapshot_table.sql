-- op.enable_tracking(..., snapshot=True): after the table is tracked (track_table.sql), its
-- baseline, one SNAPSHOT audit row per row it holds, in the migration's transaction: the
-- whole table in one batch (audit.snapshot_batch(t, null)), after which the trail rebuilds
-- it (audit.trail_complete_since). Nothing is written for a table whose trail is complete
-- already (tracked while empty, or snapshotted before). A template (sql.filled()); the
-- table's name is a string literal, never pasted as an identifier.
do $hyper_audit$
declare
    target constant text := :'target';
begin
    if pg_catalog.to_regprocedure('audit.snapshot_batch(regclass, integer)') is null then
        raise exception using
            errcode = 'undefined_function',
            message = 'op.enable_tracking: snapshot=True needs audit schema version 4, so the '
                || 'rows of ' || target || ' cannot be recorded as its baseline',
            hint = 'Upgrade the audit schema first: op.upgrade_audit(from_version=3, '
                || 'to_version=4, commit=True) before this operation.';
    end if;
    perform audit.snapshot_batch(target::regclass, null);
end
$hyper_audit$
