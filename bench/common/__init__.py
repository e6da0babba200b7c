"""What both benchmarks use: a scratch database, CPU counters, a generated log's rows."""
