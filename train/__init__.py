"""Training DCSCN: data and degradation, the loop, checkpoints and distributed launch."""
