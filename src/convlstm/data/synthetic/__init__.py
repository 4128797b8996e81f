"""Seeded generators: Moving MNIST, bouncing balls, synthetic radar, moving shapes and anomalies, each a map-style
dataset whose items are reproducible from their seed."""
