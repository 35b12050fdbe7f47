"""LightningModules: training logic around injected networks."""
