"""Training progress in, an ETA out: the sources (progress file, trainer log, events), the log parser, the
estimator, the run history, and the tracker that holds the current snapshot. Nothing here speaks HTTP."""
