"""Wire contracts: commands in, events out. JSON on the wire (msgspec)."""
