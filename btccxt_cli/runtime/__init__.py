"""Runs: config -> store, feeds, cerebro, strategy; run state for dashboards and events."""
