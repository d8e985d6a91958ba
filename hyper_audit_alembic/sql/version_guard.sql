-- Runs before every version step (steps/<n>.sql and steps/<n>.down.sql): refuses unless the
-- installed audit schema is the version the step starts from, with the fix. The check is in
-- the SQL, so offline output is safe to apply later, and a second run of the same script
-- changes nothing. A template (sql.filled()).
do $hyper_audit$
declare
    -- 'upgrade' or 'downgrade'
    direction constant text := :'direction';
    -- the version the step makes, and the version it starts from
    target constant integer := :'target';
    expected constant integer := :'expected';
    installed integer;
begin
    if pg_catalog.to_regclass('audit.schema_version') is not null then
        select max(v.version) into installed from audit.schema_version v;
    end if;
    if installed is distinct from expected then
        raise exception using
            errcode = 'object_not_in_prerequisite_state',
            message = 'audit schema ' || direction || ' to version ' || target
                || ': the installed audit schema is '
                || coalesce('version ' || installed::text, 'missing') || ', not version '
                || expected,
            hint = case
                when installed is null and direction = 'upgrade' then
                    'Install the audit trail with op.install_audit(): it installs the latest version.'
                when installed is null then
                    'There is no audit schema to downgrade in this database.'
                when installed = target then
                    'The audit schema is at version ' || target || ' already: there is nothing to '
                        || direction || '.'
                when direction = 'upgrade' and installed > target then
                    'This database has a newer audit schema than this step expects: '
                        || 'downgrade it first, or leave out this step.'
                when direction = 'upgrade' then
                    'Upgrade to version ' || expected || ' first.'
                else
                    'Downgrade to version ' || expected || ' first.'
            end;
    end if;
end
$hyper_audit$
