"""The tasks read model kept from the log: the inline projector, the row snapshot a write decides
on, the blue/green rebuild and its checks (`evolve` itself is the domain's)."""
