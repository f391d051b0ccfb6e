"""Alembic's entry point, run by ivr.store.migrate.upgrade on a connection it has opened
(inside its transaction, with the migration lock held). There is no alembic.ini: users never
run Alembic themselves; developers add a revision file to versions/ by hand."""

from alembic import context

connection = context.config.attributes["connection"]
# SQLite's DDL is transactional here: ivr.store.engine emits BEGIN itself, so a migration that
# fails half-way leaves the file as it was.
context.configure(connection=connection, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
