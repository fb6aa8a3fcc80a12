"""Shared pieces of Kassa: settings, database, tables, migrations, money and the `kassa` command."""
