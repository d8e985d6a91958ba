"""Autogenerate: the flagged models and env.py's declarations against the database.

One module per comparison, each with a ``setup(plugin)`` that registers its comparator
(as Alembic's own ``alembic/autogenerate/compare/*.py`` do); :mod:`hyper_audit_alembic.plugin`
calls them in the order they must run:

- :mod:`.lifecycle` (schema level, first): hides the ``audit`` schema from Alembic's own
  comparison, keeps the first place for ``op.install_audit()``, and puts
  ``op.upgrade_audit()`` / ``op.adopt_audit()`` there when the installed schema asks;
- :mod:`.layout` (schema level, first, after lifecycle): the layout options env.py
  declares against the audit table's;
- :mod:`.tracking` (table level): tracking to enable, change, re-sync or disable;
- :mod:`.placement` (schema level, last): lifts the tracking ops out of the tables'
  ``ModifyTableOps`` to where they belong;
- :mod:`.guard`, not part of the ``hyper_audit`` plugin: refuses flagged models when the
  plugin is off.

:mod:`.run` holds what one autogenerate run reads once and every comparator shares.
"""
