"""The run history: every run kept in a database, and the commits at which its numbers stepped.

:mod:`~harness.history.store` opens a database (a SQLite file by default, any SQLAlchemy URL
otherwise) and brings its schema up to date with the Alembic migrations shipped in
:mod:`harness.history.migrations`; :mod:`~harness.history.append` adds a run;
:mod:`~harness.history.series` reads the series that one machine and one configuration form,
and :mod:`~harness.history.changepoints` finds their steps. See docs/history.md.

Nothing is imported here: the command line's parser reads :mod:`~harness.history.settings`
without loading SQLAlchemy.
"""
