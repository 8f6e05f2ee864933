"""Fault and bad-input drills: the bridge under crashes, outages and hostile input, at a size CI can run."""
