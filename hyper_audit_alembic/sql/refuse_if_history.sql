-- uninstall_audit() without a choice about the history: refuse while any exists.
do $$
begin
    if to_regclass('audit.record_version') is not null then
        if exists (select from audit.record_version)
            or (to_regclass('audit.column_change') is not null
                and exists (select from audit.column_change))
        then
            raise exception using
                errcode = 'dependent_objects_still_exist',
                message = 'uninstall_audit: audit.record_version holds recorded history; '
                    || 'refusing to destroy it',
                hint = 'Use op.uninstall_audit(keep_history=True) to remove the audit triggers '
                    || 'and functions and keep every recorded row, or '
                    || 'op.uninstall_audit(drop_history=True) to delete the history as well.';
        end if;
    end if;
end
$$;
