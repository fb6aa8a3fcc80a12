"""Shared pieces of Kassa: settings, database, tables, migrations, money; it imports nothing
above it."""
