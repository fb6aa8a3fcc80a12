"""The `kassa` command and its tools: kassa dev, embedded servers, seeding, catalog generator."""
