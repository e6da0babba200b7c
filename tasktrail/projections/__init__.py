"""How events become tasks: `evolve`, the inline projector, rebuild and verify."""
