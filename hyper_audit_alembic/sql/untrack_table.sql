-- op.disable_tracking(): a template whose value the operation fills in (sql.filled()).
-- The checks come first, so that a missing audit schema or table gives an error that names
-- it and says what to do, online and in offline SQL alike. The table's name is a string
-- literal, never pasted as an identifier.
do $hyper_audit$
declare
    target constant text := :'target';
begin
    if pg_catalog.to_regprocedure('audit.disable_tracking(regclass)') is null then
        raise exception using
            errcode = 'undefined_function',
            message = 'op.disable_tracking: the audit trail is not installed in this database, '
                || 'so ' || target || ' cannot be untracked',
            hint = 'Without the audit trail no table is tracked: remove this step, or run '
                || 'op.install_audit() before it.';
    end if;
    if pg_catalog.to_regclass(target) is null then
        raise exception using
            errcode = 'undefined_table',
            message = 'op.disable_tracking: table ' || target || ' does not exist',
            hint = 'Disable tracking before the table is dropped or renamed (op.disable_tracking() '
                || 'before op.drop_table()), or correct the table name and schema '
                || 'given to op.disable_tracking().';
    end if;
    perform audit.disable_tracking(target::regclass);
end
$hyper_audit$
