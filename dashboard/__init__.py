"""The Dash dashboard: reads MongoDB only."""
